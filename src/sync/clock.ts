// Time, injected: the sync loop's timing rules are tested with a fake clock, not by sleeping.

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Wall-clock milliseconds since the epoch (for metrics timestamps and trigger-time latencies). */
  wallNow(): number;
  after(ms: number, fn: () => void): Timer;
}

export const realClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(t) };
  },
};

/** A clock that moves only when told to: `advance(ms)` fires every timer due, in order. */
export class FakeClock implements Clock {
  private t = 0;
  private wallBase = Date.UTC(2026, 0, 1);
  private timers: Array<{ at: number; fn: () => void; seq: number; live: boolean }> = [];
  private seq = 0;

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return this.wallBase + this.t;
  }

  after(ms: number, fn: () => void): Timer {
    const timer = { at: this.t + Math.max(0, ms), fn, seq: this.seq++, live: true };
    this.timers.push(timer);
    return { cancel: () => (timer.live = false) };
  }

  /** Moves time forward, firing due timers one at a time and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      this.timers = this.timers.filter((x) => x.live);
      const next = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.t = Math.max(this.t, next.at);
      next.live = false;
      next.fn();
    }
    this.t = end;
    await settle();
  }

  /** Timers still waiting, as delays from now (for assertions). */
  pending(): number[] {
    return this.timers.filter((x) => x.live).map((x) => x.at - this.t).sort((a, b) => a - b);
  }
}

/** Lets queued promise callbacks run (several turns: async functions chain a few). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}
