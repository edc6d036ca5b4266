// Typed wrappers around netns-tools/client.js, plus the statistics the tests use on its results. Test/demo/bench
// tooling, not product code.

import { CLIENT_JS, hostPort, type Sandbox } from './sandbox';

export type TrafficProto = 'tcp' | 'udp';

export interface ClientOptions {
  proto: TrafficProto;
  /** Destination address (IPv4 or IPv6, no brackets). */
  addr: string;
  port: number;
  /** Exchanges (connections / datagrams); default 1. */
  count?: number;
  /**
   * Per exchange, ms; default 2000. A TCP reject by ICMP (rather than RST) may only show after the SYN
   * retransmission, ~1 s (see netns-tools/client.js): keep it above ~1200 ms when checking for ECONNREFUSED.
   */
  timeoutMs?: number;
  /** Exchanges in flight at once; client.js default min(count, 8). */
  concurrency?: number;
  /** Local source address to bind. */
  bind?: string;
  /** Run the client in this cgroup v2 directory (sandbox ExecOptions.cgroup). */
  cgroup?: string;
}

export interface ClientResult {
  /** successful exchanges */
  ok: number;
  /** backend name -> successful exchanges it answered */
  counts: Record<string, number>;
  /** client address as the backend saw it -> exchanges */
  sources: Record<string, number>;
  /** error code -> exchanges (ECONNREFUSED, ETIMEDOUT, EREPLYTIMEOUT, ECLOSED, EHOSTUNREACH, ...) */
  errors: Record<string, number>;
  /** ms from the client's start to its first error, null when none */
  firstErrorMs: number | null;
  elapsedMs: number;
}

export interface HoldOptions {
  addr: string;
  port: number;
  /** connections held in parallel (default 1) */
  count?: number;
  /** how long each connection is kept (ms) */
  holdMs: number;
  /** a request line every intervalMs (default 100) */
  intervalMs?: number;
  /** connect / reply timeout (ms, default 2000) */
  timeoutMs?: number;
  bind?: string;
  /** Run the client in this cgroup v2 directory (sandbox ExecOptions.cgroup). */
  cgroup?: string;
  /** how a connection that ends well is closed: 'fin' (default) or 'rst' (no TIME_WAIT state anywhere) */
  closeWith?: 'fin' | 'rst';
}

export interface HoldResult extends ClientResult {
  /** answered request lines, all connections together */
  replies: number;
  /** connections where an answer named another backend than the greeting */
  switched: number;
}

export interface UdpLoopOptions {
  addr: string;
  port: number;
  /** how long the loop runs (ms) */
  loopMs: number;
  /** a request every intervalMs (default 100) */
  intervalMs?: number;
  /** per request (default intervalMs) */
  timeoutMs?: number;
}

export interface UdpLoopResult extends ClientResult {
  /** per request, in order: the backend that answered, or the error code */
  timeline: string[];
}

export interface LatencyOptions {
  addr: string;
  port: number;
  /** measured connects (default 1000) */
  count?: number;
  /** unmeasured connects first (default 0) */
  warmup?: number;
  timeoutMs?: number;
  bind?: string;
  /** Run the client in this cgroup v2 directory (sandbox ExecOptions.cgroup). */
  cgroup?: string;
}

export interface LatencyResult {
  /** successful samples */
  n: number;
  p50Us: number | null;
  p90Us: number | null;
  p99Us: number | null;
  minUs: number | null;
  maxUs: number | null;
  meanUs: number | null;
  errors: Record<string, number>;
  elapsedMs: number;
}

function isRecordOfNumbers(v: unknown): v is Record<string, number> {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.values(v as Record<string, unknown>).every((x) => typeof x === 'number')
  );
}

function numOrNull(v: unknown): v is number | null {
  return v === null || typeof v === 'number';
}

async function runTool(sandbox: Sandbox, ns: string, args: string[], timeoutMs: number, cgroup?: string): Promise<unknown> {
  const r = await sandbox.exec(ns, [process.execPath, CLIENT_JS, ...args], { timeoutMs, cgroup });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || line === '') {
    throw new Error(`client.js ${args.join(' ')} in ${ns}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  try {
    return JSON.parse(line) as unknown;
  } catch {
    throw new Error(`client.js ${args.join(' ')} in ${ns}: not JSON: ${line}`);
  }
}

function checkClientResult(v: unknown, what: string): ClientResult {
  const o = v as Record<string, unknown>;
  if (
    typeof v !== 'object' ||
    v === null ||
    typeof o.ok !== 'number' ||
    !isRecordOfNumbers(o.counts) ||
    !isRecordOfNumbers(o.sources) ||
    !isRecordOfNumbers(o.errors) ||
    !numOrNull(o.firstErrorMs) ||
    typeof o.elapsedMs !== 'number'
  ) {
    throw new Error(`${what}: unexpected output ${JSON.stringify(v)}`);
  }
  return {
    ok: o.ok,
    counts: o.counts,
    sources: o.sources,
    errors: o.errors,
    firstErrorMs: o.firstErrorMs,
    elapsedMs: o.elapsedMs,
  };
}

function commonArgs(o: { addr: string; port: number; timeoutMs?: number; bind?: string }): string[] {
  const args = ['--target', hostPort(o.addr, o.port)];
  if (o.timeoutMs !== undefined) args.push('--timeout-ms', String(o.timeoutMs));
  if (o.bind !== undefined) args.push('--bind', o.bind);
  return args;
}

/** Runs client.js in netns ns: `count` independent TCP connections or UDP exchanges to addr:port. */
export async function runClient(sandbox: Sandbox, ns: string, opts: ClientOptions): Promise<ClientResult> {
  const count = opts.count ?? 1;
  const args = ['--proto', opts.proto, ...commonArgs(opts), '--count', String(count)];
  if (opts.concurrency !== undefined) args.push('--concurrency', String(opts.concurrency));
  const timeoutMs = opts.timeoutMs ?? 2000;
  const conc = opts.concurrency ?? Math.max(1, Math.min(count, 8));
  const budget = Math.ceil(count / conc) * (timeoutMs + 100) + 30_000;
  return checkClientResult(await runTool(sandbox, ns, args, budget, opts.cgroup), `runClient ${opts.proto} ${opts.addr}:${opts.port}`);
}

export interface FlowSpec {
  proto: TrafficProto;
  addr: string;
  port: number;
  /** Exchanges (connections / datagrams); default 1. */
  count?: number;
  bind?: string;
}

export type FlowResult = Omit<ClientResult, 'elapsedMs'>;

/**
 * Many flows from one client.js process in netns ns (`--flows`): every exchange of every flow as runClient makes
 * them, at most `concurrency` (default 32) at once, each with its own timeout (default 2000 ms). Results in order.
 */
export async function runFlows(sandbox: Sandbox, ns: string, flows: FlowSpec[], opts: { timeoutMs?: number; concurrency?: number } = {}): Promise<FlowResult[]> {
  if (flows.length === 0) return [];
  const timeoutMs = opts.timeoutMs ?? 2000;
  const concurrency = opts.concurrency ?? 32;
  const exchanges = flows.reduce((n, f) => n + (f.count ?? 1), 0);
  const input = JSON.stringify(flows.map((f) => ({ proto: f.proto, target: hostPort(f.addr, f.port), count: f.count ?? 1, ...(f.bind ? { bind: f.bind } : {}) })));
  const args = ['--flows', '-', '--timeout-ms', String(timeoutMs), '--concurrency', String(concurrency)];
  const r = await sandbox.exec(ns, [process.execPath, CLIENT_JS, ...args], { input, timeoutMs: Math.ceil(exchanges / concurrency) * (timeoutMs + 100) + 60_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || line === '') throw new Error(`client.js --flows in ${ns}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  const out = JSON.parse(line) as { flows?: unknown };
  if (!Array.isArray(out.flows) || out.flows.length !== flows.length) throw new Error(`client.js --flows in ${ns}: unexpected output ${line.slice(0, 200)}`);
  return out.flows.map((v, i) => {
    const { elapsedMs: _, ...rest } = checkClientResult({ ...(v as object), elapsedMs: 0 }, `runFlows ${flows[i].proto} ${flows[i].addr}:${flows[i].port}`);
    return rest;
  });
}

/** A DNS-like UDP client: one socket (one conntrack entry), a request every intervalMs for loopMs. */
export async function runUdpLoop(sandbox: Sandbox, ns: string, opts: UdpLoopOptions): Promise<UdpLoopResult> {
  const args = ['--proto', 'udp', ...commonArgs(opts), '--loop-ms', String(opts.loopMs)];
  if (opts.intervalMs !== undefined) args.push('--interval-ms', String(opts.intervalMs));
  const out = await runTool(sandbox, ns, args, opts.loopMs + 30_000);
  const r = checkClientResult(out, `runUdpLoop ${opts.addr}:${opts.port}`);
  const timeline = (out as { timeline?: unknown }).timeline;
  if (!Array.isArray(timeline)) throw new Error('runUdpLoop: no timeline in the client output');
  return { ...r, timeline: timeline.map(String) };
}

/** Opens `count` TCP connections that say HOLD and then exchange a line every intervalMs for holdMs. */
export async function runHold(sandbox: Sandbox, ns: string, opts: HoldOptions): Promise<HoldResult> {
  const args = ['--proto', 'tcp', ...commonArgs(opts), '--hold-ms', String(opts.holdMs), '--count', String(opts.count ?? 1)];
  if (opts.intervalMs !== undefined) args.push('--interval-ms', String(opts.intervalMs));
  const v = await runTool(sandbox, ns, args, opts.holdMs + 2 * (opts.timeoutMs ?? 2000) + 30_000);
  const base = checkClientResult(v, `runHold ${opts.addr}:${opts.port}`);
  const o = v as Record<string, unknown>;
  if (typeof o.replies !== 'number' || typeof o.switched !== 'number') {
    throw new Error(`runHold: unexpected output ${JSON.stringify(v)}`);
  }
  return { ...base, replies: o.replies, switched: o.switched };
}

/** A client.js run in the background, stopped by closing its stdin (--until-eof). */
interface RunningTool {
  /** stdout lines so far */
  lines: string[];
  /** Resolves when a new stdout line arrives or the tool exits. */
  changed(): Promise<void>;
  exited: boolean;
  /** Closes stdin, waits for the exit (killing the tool after graceMs) and returns the final JSON line, parsed. */
  finish(graceMs: number): Promise<unknown>;
}

function startTool(sandbox: Sandbox, ns: string, args: string[], cgroup?: string): RunningTool {
  const child = sandbox.spawn(ns, [process.execPath, CLIENT_JS, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cgroup });
  let out = '';
  let err = '';
  let wake: Array<() => void> = [];
  const notify = () => {
    const w = wake;
    wake = [];
    for (const f of w) f();
  };
  const tool: RunningTool = {
    lines: [],
    exited: false,
    changed: () => new Promise<void>((resolve) => (tool.exited ? resolve() : wake.push(resolve))),
    finish: async (graceMs) => {
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
      const line = tool.lines[tool.lines.length - 1] ?? '';
      if (child.exitCode !== 0 || line === '') {
        throw new Error(`client.js ${args.join(' ')} in ${ns}: exit ${child.exitCode ?? child.signalCode}: ${err.trim() || out.trim()}`);
      }
      try {
        return JSON.parse(line) as unknown;
      } catch {
        throw new Error(`client.js ${args.join(' ')} in ${ns}: not JSON: ${line}`);
      }
    },
  };
  child.stdin?.on('error', () => {
    /* the tool may have exited already */
  });
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString('utf8');
    let nl;
    let any = false;
    while ((nl = out.indexOf('\n')) >= 0) {
      tool.lines.push(out.slice(0, nl));
      out = out.slice(nl + 1);
      any = true;
    }
    if (any) notify();
  });
  child.stderr?.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const exit = new Promise<void>((resolve) => {
    child.once('close', () => {
      tool.exited = true;
      notify();
      resolve();
    });
  });
  return tool;
}

/** Resolves once cond() holds (checked at each stdout line); rejects after timeoutMs, or when the tool has ended. */
async function waitForTool(tool: RunningTool, cond: () => boolean, timeoutMs: number, what: string, detail: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return;
    if (tool.exited) throw new Error(`client ended before ${what}: ${detail()}`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms: ${detail()}`);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([tool.changed(), new Promise<void>((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
  }
}

export interface RunningHold {
  /** Resolves once every connection has its greeting; rejects after timeoutMs, or when the client has ended. */
  established(timeoutMs: number): Promise<void>;
  /**
   * Ends the connections: each completes one more exchange begun after this call, then closes. Resolves with the
   * result: stoppedBy 'eof', or 'itself' when they had all ended before (holdMs ran out, or every one failed).
   */
  stop(): Promise<HoldResult & { stoppedBy: string }>;
}

/**
 * runHold, until stop() (holdMs is only an upper bound): for tests that keep connections open across an event
 * whose duration they cannot know in advance (a sync on a loaded machine).
 */
export function startHold(sandbox: Sandbox, ns: string, opts: HoldOptions): RunningHold {
  const args = ['--proto', 'tcp', ...commonArgs(opts), '--hold-ms', String(opts.holdMs), '--count', String(opts.count ?? 1), '--until-eof'];
  if (opts.intervalMs !== undefined) args.push('--interval-ms', String(opts.intervalMs));
  if (opts.closeWith !== undefined) args.push('--close', opts.closeWith);
  const tool = startTool(sandbox, ns, args, opts.cgroup);
  return {
    established: (timeoutMs) =>
      waitForTool(tool, () => tool.lines.some((l) => l.startsWith('{"established"')), timeoutMs,
        `${opts.count ?? 1} held connections to ${opts.addr}:${opts.port}`, () => tool.lines.join(' | ')),
    async stop() {
      const v = await tool.finish(2 * (opts.timeoutMs ?? 2000) + 30_000);
      const base = checkClientResult(v, `startHold ${opts.addr}:${opts.port}`);
      const o = v as Record<string, unknown>;
      if (typeof o.replies !== 'number' || typeof o.switched !== 'number' || typeof o.stoppedBy !== 'string') {
        throw new Error(`startHold: unexpected output ${JSON.stringify(v)}`);
      }
      return { ...base, replies: o.replies, switched: o.switched, stoppedBy: o.stoppedBy };
    },
  };
}

export interface RunningUdpLoop {
  /** The entries so far (the backend that answered, or the error code), in order, as the client reports them. */
  readonly timeline: readonly string[];
  /** Resolves once pred(timeline) holds; rejects after timeoutMs, or when the client has ended without it. */
  waitFor(pred: (timeline: readonly string[]) => boolean, timeoutMs: number, what: string): Promise<void>;
  /** Ends the loop (after the request in flight) and resolves with its result (stoppedBy 'eof', or 'itself'). */
  stop(): Promise<UdpLoopResult & { stoppedBy: string }>;
}

/** runUdpLoop, streaming its timeline, until stop() (loopMs is only an upper bound). */
export function startUdpLoop(sandbox: Sandbox, ns: string, opts: UdpLoopOptions): RunningUdpLoop {
  const args = ['--proto', 'udp', ...commonArgs(opts), '--loop-ms', String(opts.loopMs), '--until-eof', '--stream'];
  if (opts.intervalMs !== undefined) args.push('--interval-ms', String(opts.intervalMs));
  const tool = startTool(sandbox, ns, args);
  const timeline: string[] = [];
  let seen = 0;
  const update = () => {
    for (; seen < tool.lines.length; seen++) {
      try {
        const o = JSON.parse(tool.lines[seen]) as { r?: unknown };
        if (typeof o.r === 'string') timeline.push(o.r);
      } catch {
        /* not a timeline line */
      }
    }
  };
  return {
    get timeline() {
      update();
      return timeline;
    },
    waitFor: (pred, timeoutMs, what) =>
      waitForTool(tool, () => {
        update();
        return pred(timeline);
      }, timeoutMs, what, () => timeline.join(' ')),
    async stop() {
      const v = await tool.finish((opts.timeoutMs ?? opts.intervalMs ?? 100) + 30_000);
      const r = checkClientResult(v, `startUdpLoop ${opts.addr}:${opts.port}`);
      const o = v as { timeline?: unknown; stoppedBy?: unknown };
      if (!Array.isArray(o.timeline) || typeof o.stoppedBy !== 'string') throw new Error(`startUdpLoop: unexpected output ${JSON.stringify(v)}`);
      return { ...r, timeline: o.timeline.map(String), stoppedBy: o.stoppedBy };
    },
  };
}

/** Sequential TCP connects from ns; connect() to 'connect' latency percentiles in microseconds. */
export async function runLatency(sandbox: Sandbox, ns: string, opts: LatencyOptions): Promise<LatencyResult> {
  const count = opts.count ?? 1000;
  const warmup = opts.warmup ?? 0;
  const args = ['--latency', ...commonArgs(opts), '--count', String(count), '--warmup', String(warmup)];
  const v = await runTool(sandbox, ns, args, (count + warmup) * 50 + 60_000, opts.cgroup);
  const o = v as Record<string, unknown>;
  const keys = ['p50Us', 'p90Us', 'p99Us', 'minUs', 'maxUs', 'meanUs'] as const;
  if (
    typeof v !== 'object' ||
    v === null ||
    typeof o.n !== 'number' ||
    !keys.every((k) => numOrNull(o[k])) ||
    !isRecordOfNumbers(o.errors) ||
    typeof o.elapsedMs !== 'number'
  ) {
    throw new Error(`runLatency: unexpected output ${JSON.stringify(v)}`);
  }
  const g = (k: (typeof keys)[number]): number | null => o[k] as number | null;
  return {
    n: o.n,
    p50Us: g('p50Us'),
    p90Us: g('p90Us'),
    p99Us: g('p99Us'),
    minUs: g('minUs'),
    maxUs: g('maxUs'),
    meanUs: g('meanUs'),
    errors: o.errors,
    elapsedMs: o.elapsedMs,
  };
}

/** counts in the order of names, 0 for names that got nothing (what chiSquareUniform wants). */
export function countsFor(result: Pick<ClientResult, 'counts'>, names: string[]): number[] {
  return names.map((n) => result.counts[n] ?? 0);
}

/** Sum of the error counts. */
export function errorTotal(result: Pick<ClientResult, 'errors'>): number {
  return Object.values(result.errors).reduce((a, b) => a + b, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics

export interface ChiSquareResult {
  statistic: number;
  degreesOfFreedom: number;
  /** P(X >= statistic) for X ~ chi-square(k-1): small means "not uniform". */
  pValue: number;
}

/**
 * Pearson's chi-square goodness-of-fit test of counts (one per category, zeros included) against the uniform
 * distribution. Needs at least 2 categories and a positive total.
 */
export function chiSquareUniform(counts: number[]): ChiSquareResult {
  const k = counts.length;
  if (k < 2) throw new RangeError('chiSquareUniform: need at least 2 categories');
  if (counts.some((c) => !Number.isFinite(c) || c < 0)) {
    throw new RangeError(`chiSquareUniform: counts must be finite and >= 0: ${JSON.stringify(counts)}`);
  }
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) throw new RangeError('chiSquareUniform: total count is 0');
  const expected = total / k;
  const statistic = counts.reduce((s, c) => s + ((c - expected) * (c - expected)) / expected, 0);
  const df = k - 1;
  return { statistic, degreesOfFreedom: df, pValue: chiSquareSurvival(statistic, df) };
}

/** P(X >= x) for X ~ chi-square(df) = Q(df/2, x/2). */
export function chiSquareSurvival(x: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`chiSquareSurvival: df must be > 0, got ${df}`);
  if (Number.isNaN(x)) return NaN;
  if (x <= 0) return 1;
  return regularizedGammaQ(df / 2, x / 2);
}

/** ln Γ(z) for z > 0 (Lanczos, g=7, n=9; ~15 significant digits). */
export function logGamma(z: number): number {
  const g = 7;
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (z < 0.5) {
    // reflection: Γ(z)Γ(1-z) = π / sin(πz)
    return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * z))) - logGamma(1 - z);
  }
  const zz = z - 1;
  let a = c[0];
  const t = zz + g + 0.5;
  for (let i = 1; i < g + 2; i++) a += c[i] / (zz + i);
  return 0.5 * Math.log(2 * Math.PI) + (zz + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a), a > 0, x >= 0. */
export function regularizedGammaQ(a: number, x: number): number {
  if (!(a > 0)) throw new RangeError(`regularizedGammaQ: a must be > 0, got ${a}`);
  if (x < 0 || Number.isNaN(x)) throw new RangeError(`regularizedGammaQ: x must be >= 0, got ${x}`);
  if (x === 0) return 1;
  if (x === Infinity) return 0;
  const logPrefix = a * Math.log(x) - x - logGamma(a);
  const EPS = 1e-16;
  const MAX_ITER = 10_000;
  if (x < a + 1) {
    // series for P(a, x): e^-x x^a / Γ(a+1) * Σ x^n / ((a+1)...(a+n))
    let ap = a;
    let term = 1 / a;
    let sum = term;
    for (let n = 0; n < MAX_ITER; n++) {
      ap += 1;
      term *= x / ap;
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * EPS) break;
    }
    const p = sum * Math.exp(logPrefix);
    return Math.min(1, Math.max(0, 1 - p));
  }
  // continued fraction for Q(a, x) (modified Lentz)
  const TINY = 1e-300;
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITER; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPS) break;
  }
  return Math.min(1, Math.max(0, Math.exp(logPrefix) * h));
}
