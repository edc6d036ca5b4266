// `svcplane bench` flags -> what to run. Every value is checked here, before anything is created, so a bad flag is
// a usage error (exit 2) naming the flag and what it takes.
import { UsageError } from '../cli/args';
import { parseGoDuration } from '../config/duration';
import { MAX_SERVICES } from './shape';

export type BenchMode = 'nftables' | 'ebpf' | 'ipvs';
export const BENCH_MODES: readonly BenchMode[] = ['nftables', 'ebpf', 'ipvs'];

export interface BenchOptions {
  modes: BenchMode[];
  /** Cluster sizes, ascending: Services, each with `endpoints` endpoints. */
  services: number[];
  endpoints: number;
  /** Changes per second during the churn phase. */
  churnPerSecond: number;
  durationSeconds: number;
  /**
   * An unrecorded churn phase first, at the same rate: a fresh process's first syncs run while V8 still compiles
   * them, which a long-running agent's do not (0: none, the first syncs are in the figures).
   */
  warmupSeconds: number;
  output: 'text' | 'json';
  /** Also time kube-proxy-shaped peers (nft -f, iptables-restore) on the same Services. */
  peers: boolean;
  /** A namespace file to program instead of a throwaway one. */
  netns?: string;
}

export const BENCH_DEFAULTS = { mode: 'nftables', services: '1000,10000', endpoints: '2', churn: '100/s', duration: '10s', warmup: '0s' } as const;

export function benchOptions(flags: { mode?: string; services?: string[]; endpoints?: string; churn?: string; duration?: string; warmup?: string; output?: string; netns?: string; peers?: boolean }): BenchOptions {
  const mode = flags.mode ?? BENCH_DEFAULTS.mode;
  const modes = mode === 'all' ? [...BENCH_MODES] : [mode];
  for (const m of modes) if (!BENCH_MODES.includes(m as BenchMode)) throw new UsageError(`--mode must be nftables, ebpf, ipvs or all, not "${mode}"`);
  const sizes = (flags.services?.length ? flags.services : [BENCH_DEFAULTS.services]).flatMap((s) => s.split(',')).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > MAX_SERVICES) throw new UsageError(`--services takes whole numbers from 1 to ${MAX_SERVICES} (comma-separated), not "${s}"`);
    return n;
  });
  const endpoints = Number(flags.endpoints ?? BENCH_DEFAULTS.endpoints);
  if (!Number.isInteger(endpoints) || endpoints < 1 || endpoints > 1000) throw new UsageError(`--endpoints takes a whole number from 1 to 1000, not "${flags.endpoints}"`);
  const churnText = flags.churn ?? BENCH_DEFAULTS.churn;
  const churn = /^(\d+(?:\.\d+)?)\/s$/.exec(churnText);
  const churnPerSecond = churn ? Number(churn[1]) : NaN;
  if (!(churnPerSecond > 0 && churnPerSecond <= 100_000)) throw new UsageError(`--churn takes changes per second as RATE/s (e.g. 100/s, at most 100000/s), not "${churnText}"`);
  const durationText = flags.duration ?? BENCH_DEFAULTS.duration;
  const ms = parseGoDuration(durationText);
  if (ms === undefined || ms < 100 || ms > 3_600_000) throw new UsageError(`--duration takes a duration from 100ms to 1h (e.g. 10s, 2m), not "${durationText}"`);
  const warmupText = flags.warmup ?? BENCH_DEFAULTS.warmup;
  const warmupMs = parseGoDuration(warmupText);
  if (warmupMs === undefined || warmupMs < 0 || warmupMs > 3_600_000) throw new UsageError(`--warmup takes a duration from 0s to 1h (e.g. 5s), not "${warmupText}"`);
  return {
    modes: modes as BenchMode[],
    services: [...new Set(sizes)].sort((a, b) => a - b),
    endpoints,
    churnPerSecond,
    durationSeconds: ms / 1000,
    warmupSeconds: warmupMs / 1000,
    output: flags.output === 'json' ? 'json' : 'text',
    peers: flags.peers === true,
    netns: flags.netns,
  };
}
