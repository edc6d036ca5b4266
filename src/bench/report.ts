// The summary table a terminal gets at the end of `svcplane bench` (--output json prints the BenchReport instead).
import { type PlotCase, type PlotSeries, renderSyncPlot } from './plot';
import type { BenchReport } from './schema';

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(0));
const sec = (x: number) => `${x.toFixed(3)} s`;
const mib = (x: number) => `${(x / 2 ** 20).toFixed(0)} MiB`;

export function formatBenchReport(r: BenchReport): string {
  const o = r.options;
  const head = `svcplane bench: ${o.modes.join(', ')} at ${o.services.join(', ')} Services x ${o.endpoints} endpoints; churn ${o.churnPerSecond}/s for ${o.durationSeconds} s; ` +
    `${r.netns === 'throwaway' ? 'a throwaway namespace' : r.netns}; kernel ${r.machine.kernel}, ${r.machine.cpus} CPUs`;
  const rows: string[][] = [['mode', 'Services', 'full sync', 'of which kernel', 'kernel floor', 'changes / syncs', 'change p50 / p99 / max ms', 'per change: ops, bytes, msgs', 'CPU', 'RSS']];
  const notes: string[] = [];
  for (const c of r.cases) {
    if (c.skipped) {
      rows.push([c.mode, String(c.services), 'skipped', '', '', '', '', '', '', '']);
      notes.push(`${c.mode} ${c.services}: skipped: ${c.skipped}`);
      continue;
    }
    const f = c.fullSync!;
    const ch = c.churn!;
    rows.push([
      c.mode, String(c.services), sec(f.seconds), f.phases.kernel !== undefined ? sec(f.phases.kernel) : '-', `${f.kernelFloorSeconds === null ? '-' : sec(f.kernelFloorSeconds)}${f.socketLBFloorSeconds !== undefined ? ` + ${sec(f.socketLBFloorSeconds)} (maps)` : ''}${f.ipvsFloorSeconds !== undefined ? ` + ${f.ipvsFloorSeconds === null ? '-' : sec(f.ipvsFloorSeconds)} (IPVS)` : ''}`,
      `${ch.changes} / ${ch.syncs}`, `${ms(ch.latency.p50Ms)} / ${ms(ch.latency.p99Ms)} / ${ms(ch.latency.maxMs)}`,
      `${ch.perChange.operations.toFixed(1)}, ${ch.perChange.bytes.toFixed(0)}, ${ch.perChange.netlinkMessages.toFixed(1)}`,
      `${(c.cpuSeconds ?? 0).toFixed(1)} s`, mib(c.rssBytes ?? 0),
    ]);
  }
  return [head, '', ...textTable(rows), ...(notes.length ? ['', ...notes] : []), ...peersTable(r)].join('\n');
}

/** The peers at each size: the peer's time over svcplane's full sync in the matching mode (ipvsadm: ipvs, else nftables). */
function peersTable(r: BenchReport): string[] {
  if (!r.peers?.length) return [];
  const rows = [['Services', 'peer (kube-proxy-shaped)', 'seconds', 'vs svcplane full sync (nftables; ipvsadm: ipvs)']];
  for (const p of r.peers) {
    const mode = p.tool === 'ipvsadm --restore' ? 'ipvs' : 'nftables';
    const own = r.cases.find((c) => c.mode === mode && c.services === p.services && c.fullSync)?.fullSync?.seconds;
    rows.push([String(p.services), p.tool, p.seconds === null ? `- (${p.error})` : sec(p.seconds), p.seconds !== null && own ? `${(p.seconds / own).toFixed(1)}x` : '-']);
  }
  return ['', ...textTable(rows)];
}

/** Rows as aligned columns, a rule under the first (the header). */
function textTable(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd());
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return lines;
}

const MODE_COLORS: Record<string, [string, string]> = { nftables: ['#1f77b4', '#aec7e8'], ebpf: ['#d62728', '#ff9896'], ipvs: ['#2ca02c', '#98df8a'] };

/** --plot: per mode, the full sync and the change latency's p99 against Services (log-log, seconds). */
export function benchPlot(r: BenchReport): string {
  const sizes = [...new Set(r.cases.map((c) => c.services))];
  const modes = [...new Set(r.cases.filter((c) => !c.skipped).map((c) => c.mode))];
  const cases: PlotCase[] = sizes.map((services) => {
    const tools: PlotCase['tools'] = {};
    for (const c of r.cases.filter((x) => x.services === services && !x.skipped)) {
      tools[`${c.mode} full`] = { seconds: c.fullSync!.seconds };
      tools[`${c.mode} p99`] = { seconds: c.churn!.latency.p99Ms / 1000 };
    }
    return { services, tools };
  });
  const series: PlotSeries[] = modes.flatMap((m) => [
    { key: `${m} full`, label: `${m}: full sync`, color: MODE_COLORS[m][0] },
    { key: `${m} p99`, label: `${m}: change p99 at ${r.options.churnPerSecond}/s`, color: MODE_COLORS[m][1] },
  ]);
  return renderSyncPlot(cases, `svcplane bench: ${r.options.endpoints} endpoints per Service, kernel ${r.machine.kernel} (log-log)`, series);
}
