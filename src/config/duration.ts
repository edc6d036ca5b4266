// Go's time.ParseDuration and Duration.String(), which is how KubeProxyConfiguration writes durations ("30s",
// "1m0s", "250ms"), so an existing kube-proxy ConfigMap reads the same here.

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or undefined if TEXT is not a Go duration. */
export function parseGoDuration(text: string): number | undefined {
  const m = /^([-+]?)(.*)$/.exec(text.trim());
  if (!m) return undefined;
  const body = m[2];
  if (body === '0') return 0;
  if (body === '') return undefined;
  let total = 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let pos = 0;
  let part: RegExpExecArray | null;
  while ((part = re.exec(body))) {
    total += Number(part[1]) * UNITS[part[2]];
    pos = re.lastIndex;
  }
  if (pos !== body.length) return undefined;
  return m[1] === '-' ? -total : total;
}

/** Duration.String(): "1h2m3s", "1m0s", "500ms", "0s". */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(ms);
  if (rest < 1000) return `${sign}${trim(rest)}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = `${trim(rest / 1000)}s`;
  if (h) return `${sign}${h}h${m}m${s}`;
  if (m) return `${sign}${m}m${s}`;
  return sign + s;
}

function trim(n: number): string {
  return String(Math.round(n * 1e6) / 1e6);
}
