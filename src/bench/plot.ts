// Dependency-free SVG line plots against Service count: times (log-log, one line per tool), and ratios.
export interface PlotCase {
  services: number;
  tools: Record<string, { seconds: number | null; timedOut?: boolean }>;
}

export interface PlotSeries {
  key: string;
  label: string;
  color: string;
}

const COLORS: Record<string, string> = {
  svcplane: '#d62728',
  kernelFloor: '#ff9896',
  kubeProxyNft: '#1f77b4',
  iptablesLegacy: '#2ca02c',
  iptablesNft: '#9467bd',
};
const LABELS: Record<string, string> = {
  svcplane: 'svcplane (libnftnl, one batch)',
  kernelFloor: 'kernel floor (svcplane batch, prebuilt bytes)',
  kubeProxyNft: 'kube-proxy nftables mode (nft -f)',
  iptablesLegacy: 'kube-proxy iptables mode (iptables-legacy-restore)',
  iptablesNft: 'kube-proxy iptables mode (iptables-nft-restore)',
};

const SYNC_SERIES: PlotSeries[] = Object.keys(COLORS).map((key) => ({ key, label: LABELS[key], color: COLORS[key] }));

/** Seconds against Services, log-log; `series` names the tools' lines (default: the nftables bench's). */
export function renderSyncPlot(cases: PlotCase[], title = 'Full sync time, Services x 2 endpoints (log-log)', series: PlotSeries[] = SYNC_SERIES): string {
  const W = 760, H = 460, L = 70, R = 300, T = 40, B = 50;
  const xs = cases.map((c) => c.services);
  const ys = cases.flatMap((c) => Object.values(c.tools).map((t) => t.seconds ?? 120)).filter((v) => v > 0);
  if (xs.length === 0 || ys.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="40">no data</text></svg>`;
  const lx0 = Math.floor(Math.log10(Math.min(...xs))), lx1 = Math.ceil(Math.log10(Math.max(...xs)));
  const ly0 = Math.floor(Math.log10(Math.min(...ys))), ly1 = Math.ceil(Math.log10(Math.max(...ys)));
  const X = (v: number) => L + ((Math.log10(v) - lx0) / Math.max(1, lx1 - lx0)) * (W - L - R);
  const Y = (v: number) => H - B - ((Math.log10(v) - ly0) / Math.max(1, ly1 - ly0)) * (H - T - B);
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${L}" y="22" font-size="14">${title}</text>`];
  for (let e = ly0; e <= ly1; e++) {
    const y = Y(10 ** e);
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#ddd"/>`, `<text x="${L - 8}" y="${y + 4}" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toPrecision(1)} s</text>`);
  }
  for (const v of xs) {
    const x = X(v);
    out.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${H - B}" stroke="#eee"/>`, `<text x="${x}" y="${H - B + 18}" text-anchor="middle">${v >= 1000 ? `${v / 1000}k` : v}</text>`);
  }
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">Services</text>`);
  const shown = series.filter((s) => cases.some((c) => c.tools[s.key]));
  const color = Object.fromEntries(shown.map((s) => [s.key, s.color]));
  shown.forEach(({ key: k, label }, i) => {
    const pts = cases.filter((c) => c.tools[k]?.seconds).map((c) => `${X(c.services)},${Y(c.tools[k].seconds!)}`);
    if (pts.length) out.push(`<polyline fill="none" stroke="${color[k]}" stroke-width="2" points="${pts.join(' ')}"/>`);
    for (const c of cases) {
      const t = c.tools[k];
      if (!t) continue;
      if (t.seconds) out.push(`<circle cx="${X(c.services)}" cy="${Y(t.seconds)}" r="3" fill="${color[k]}"/>`);
      else if (t.timedOut) out.push(`<text x="${X(c.services)}" y="${Y(120)}" fill="${color[k]}" text-anchor="middle">&gt;120 s</text>`);
    }
    const ly = T + 10 + i * 20;
    out.push(`<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${ly}" y2="${ly}" stroke="${color[k]}" stroke-width="2"/>`, `<text x="${W - R + 46}" y="${ly + 4}">${label}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** One line per series: a ratio (1 = the baseline, drawn) against Service count (log x, linear y). */
export function renderRatioPlot(title: string, xs: number[], series: Array<{ label: string; color: string; ys: Array<number | null> }>): string {
  const W = 760, H = 420, L = 60, R = 280, T = 40, B = 50;
  const all = series.flatMap((s) => s.ys.filter((y): y is number => y !== null && Number.isFinite(y)));
  const y0 = Math.min(0.8, Math.floor(Math.min(1, ...all) * 10) / 10), y1 = Math.max(1.2, Math.ceil(Math.max(1, ...all) * 10) / 10);
  const lx0 = Math.log10(Math.max(1, Math.min(...xs))), lx1 = Math.log10(Math.max(...xs));
  const X = (v: number) => L + ((Math.log10(Math.max(1, v)) - lx0) / Math.max(1e-9, lx1 - lx0)) * (W - L - R);
  const Y = (v: number) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${L}" y="22" font-size="14">${title}</text>`];
  for (let v = y0; v <= y1 + 1e-9; v += 0.1) {
    const y = Y(v);
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="${Math.abs(v - 1) < 1e-9 ? '#888' : '#eee'}"/>`, `<text x="${L - 8}" y="${y + 4}" text-anchor="end">${v.toFixed(1)}×</text>`);
  }
  for (const v of xs) {
    const x = X(v);
    out.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${H - B}" stroke="#eee"/>`, `<text x="${x}" y="${H - B + 18}" text-anchor="middle">${v >= 1000 ? `${v / 1000}k` : v}</text>`);
  }
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">Services</text>`);
  series.forEach((s, i) => {
    const pts = xs.map((x, j) => [x, s.ys[j]] as const).filter((p): p is readonly [number, number] => p[1] !== null);
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map(([x, y]) => `${X(x)},${Y(y)}`).join(' ')}"/>`);
    for (const [x, y] of pts) out.push(`<circle cx="${X(x)}" cy="${Y(y)}" r="3" fill="${s.color}"/>`);
    const ly = T + 10 + i * 20;
    out.push(`<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"/>`, `<text x="${W - R + 46}" y="${ly + 4}">${s.label}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
