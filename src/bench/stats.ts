// Nearest-rank percentiles of timed samples: svcplane bench's churn latency and the repository benchmarks' figures.
import type { Latency } from './schema';

export interface Percentiles {
  p50Ms: number;
  p99Ms: number;
  n: number;
}

/** The nearest-rank q-quantile of ascending samples (0 when there are none). */
function rank(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : 0;
}

/** p50 / p99 of samples in microseconds, in milliseconds. */
export function percentiles(samplesUs: number[]): Percentiles {
  const s = [...samplesUs].sort((a, b) => a - b);
  return { p50Ms: rank(s, 0.5) / 1000, p99Ms: rank(s, 0.99) / 1000, n: s.length };
}

/** p50 / p99 / max of samples in milliseconds. */
export function latencyOf(ms: number[]): Latency {
  const s = [...ms].sort((a, b) => a - b);
  return { p50Ms: rank(s, 0.5), p99Ms: rank(s, 0.99), maxMs: s.length ? s[s.length - 1] : 0 };
}
