// Percentiles of timed samples, shared by the benches.
export interface Percentiles {
  p50Ms: number;
  p99Ms: number;
  n: number;
}

/** Nearest-rank p50 / p99 of samples in microseconds, in milliseconds. */
export function percentiles(samplesUs: number[]): Percentiles {
  const s = [...samplesUs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] / 1000;
  return { p50Ms: at(0.5), p99Ms: at(0.99), n: s.length };
}
