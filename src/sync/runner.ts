// Runs a sync function no more often than minInterval (with a small burst) and at least every maxInterval,
// one run at a time: kube-proxy's BoundedFrequencyRunner (pkg/util/async/bounded_frequency_runner.go), for an
// async function. run() asks for a run as soon as the rate allows; retryAfter() asks for one later; a request
// made while a run is in flight is served after it ends, never concurrently.
import type { Clock, Timer } from './clock';

export interface RunnerOptions {
  /** Least time between two runs, ms (0: no limit). kube-proxy's minSyncPeriod. */
  minIntervalMs: number;
  /** Most time between two runs, ms: a run happens then even if nobody asked. kube-proxy's syncPeriod. */
  maxIntervalMs: number;
  /** Runs allowed back to back before minInterval applies (a token bucket; kube-proxy uses 2). */
  burstRuns: number;
  clock: Clock;
}

export class BoundedFrequencyRunner {
  private tokens: number;
  private refilledAt: number;
  private wanted = false;
  private retryAt: number | undefined;
  private periodicAt: number;
  private running: Promise<void> | undefined;
  private timer: Timer | undefined;
  private timerAt = Infinity;
  private stopped = true;

  constructor(private readonly fn: () => Promise<void>, private readonly opts: RunnerOptions) {
    this.tokens = opts.burstRuns;
    this.refilledAt = opts.clock.now();
    this.periodicAt = Infinity;
  }

  /** Starts the periodic schedule (the first periodic run is maxInterval from now). */
  start(): void {
    this.stopped = false;
    this.periodicAt = this.opts.clock.now() + this.opts.maxIntervalMs;
    this.evaluate();
  }

  /** Asks for a run as soon as the rate limit allows. */
  run(): void {
    this.wanted = true;
    this.evaluate();
  }

  /** Asks for a run in `ms` (unless one comes sooner anyway): for retrying a failed sync. */
  retryAfter(ms: number): void {
    const at = this.opts.clock.now() + ms;
    if (this.retryAt === undefined || at < this.retryAt) this.retryAt = at;
    this.evaluate();
  }

  /** Stops scheduling; resolves once a run in flight has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer();
    await this.running;
  }

  private refill(now: number): void {
    const min = this.opts.minIntervalMs;
    if (min <= 0) {
      this.tokens = this.opts.burstRuns;
    } else {
      this.tokens = Math.min(this.opts.burstRuns, this.tokens + (now - this.refilledAt) / min);
    }
    this.refilledAt = now;
  }

  private evaluate(): void {
    if (this.stopped || this.running) return;
    const now = this.opts.clock.now();
    this.refill(now);
    const due = this.wanted || (this.retryAt !== undefined && this.retryAt <= now) || this.periodicAt <= now;
    if (due && (this.tokens >= 1 || this.opts.minIntervalMs <= 0)) {
      this.launch(now);
      return;
    }
    // Not now: wake up when the earliest of (a token for a due run, the retry, the periodic run) comes.
    let at = Math.min(this.retryAt ?? Infinity, this.periodicAt);
    if (due) at = Math.min(at, now + (1 - this.tokens) * this.opts.minIntervalMs);
    this.schedule(at);
  }

  private launch(now: number): void {
    this.tokens -= 1;
    this.wanted = false;
    this.retryAt = undefined;
    this.periodicAt = now + this.opts.maxIntervalMs;
    this.cancelTimer();
    // fn reports its own failures (and asks for a retry); a throw here must not stop the loop.
    this.running = this.fn()
      .catch(() => undefined)
      .finally(() => {
        this.running = undefined;
        this.evaluate();
      });
  }

  private schedule(at: number): void {
    if (at === Infinity) return this.cancelTimer();
    if (this.timer && this.timerAt === at) return;
    this.cancelTimer();
    this.timerAt = at;
    this.timer = this.opts.clock.after(at - this.opts.clock.now(), () => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.evaluate();
    });
  }

  private cancelTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = Infinity;
  }
}
