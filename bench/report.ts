// Prints bench/results/nftables.json (and ipvs.json, affinity.json beside it) as the Markdown tables README shows
// (node dist/bench/report.js [file]).
import * as fs from 'node:fs';
import * as path from 'node:path';

interface Tool { seconds: number | null; timedOut?: boolean; error?: string; kernelSeconds?: number }
interface FullCase { services: number; endpointsPerService: number; tools: Record<string, Tool>; ratios: Record<string, number | null> }
interface Pct { p50Ms: number; p99Ms: number; n: number }
interface IncCase { services: number; addEndpoint: Pct; removeEndpoint: Pct; addService: Pct }
interface Lat { p50Us: number | null; p99Us: number | null; n: number }
interface DpCase { services: number; svcplane: Lat | null; kubeProxyIptables: Lat | null; kubeProxyNft: Lat | null }
interface Results { date: string; machine: Record<string, unknown>; full: FullCase[]; incremental: IncCase[]; dataplane: DpCase[]; targets: Record<string, number | string | null> }

const file = process.argv[2] ?? path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../bench/results/nftables.json' : 'results/nftables.json');
const r = JSON.parse(fs.readFileSync(file, 'utf8')) as Results;

const t = (x: Tool | undefined) => (!x ? '' : x.seconds !== null ? `${x.seconds.toFixed(3)} s` : x.timedOut ? '> 120 s' : 'failed');
const ratio = (base: Tool, x: Tool | undefined) => {
  if (!x || !base.seconds) return '';
  if (x.seconds === null) return x.timedOut ? `> ${(120 / base.seconds).toFixed(0)}×` : '';
  return `${(x.seconds / base.seconds).toFixed(1)}×`;
};
const lines: string[] = [];
lines.push(`Run of ${r.date.slice(0, 10)} on ${String(r.machine.cpus)} CPUs, kernel ${String(r.machine.kernel)}. Ratios are peer time / svcplane time in the same run.`, '');
lines.push('| Services × endpoints | svcplane | kernel floor | kube-proxy `nft -f` | iptables-legacy-restore | iptables-nft-restore |', '|---|---|---|---|---|---|');
for (const c of r.full) {
  const s = c.tools.svcplane;
  lines.push(`| ${c.services} × ${c.endpointsPerService} | ${t(s)} | ${t(c.tools.kernelFloor)} | ${t(c.tools.kubeProxyNft)} (${ratio(s, c.tools.kubeProxyNft)}) | ${t(c.tools.iptablesLegacy)} (${ratio(s, c.tools.iptablesLegacy)}) | ${t(c.tools.iptablesNft)} (${ratio(s, c.tools.iptablesNft)}) |`);
}
lines.push('', '| Incremental change (p50 / p99 ms) | add endpoint | remove endpoint | add Service |', '|---|---|---|---|');
for (const c of r.incremental) {
  const f = (p: Pct) => `${p.p50Ms.toFixed(2)} / ${p.p99Ms.toFixed(2)}`;
  lines.push(`| ${c.services} Services | ${f(c.addEndpoint)} | ${f(c.removeEndpoint)} | ${f(c.addService)} |`);
}
lines.push('', '| New-connection latency through the DNAT, p50 / p99 µs | svcplane | kube-proxy iptables | kube-proxy nftables |', '|---|---|---|---|');
for (const c of r.dataplane) {
  const f = (l: Lat | null) => (l && l.p50Us !== null && l.p99Us !== null ? `${l.p50Us.toFixed(0)} / ${l.p99Us.toFixed(0)}` : 'not measured');
  lines.push(`| ${c.services} Services | ${f(c.svcplane)} | ${f(c.kubeProxyIptables)} | ${f(c.kubeProxyNft)} |`);
}
lines.push('', '| Target | this run |', '|---|---|');
for (const [k, v] of Object.entries(r.targets)) lines.push(`| ${k} | ${v === null ? 'n/a' : typeof v === 'number' ? v.toFixed(2) : v} |`);
console.log(lines.join('\n'));

// bench/results/ipvs.json, when present (`npm run bench:ipvs`).
interface IpvsFull {
  services: number;
  endpointsPerService: number;
  svcplane: { seconds: number; coldSeconds: number; kernelSeconds?: number };
  peer: { ipBatchSeconds: number; ipvsadmRestoreSeconds: number; seconds: number };
  ratio: number;
  variants: { svcplaneAddressMode: number; peerWithRoutes: number };
}
interface IpvsResults { date: string; machine: Record<string, unknown>; full: IpvsFull[]; incremental: Array<{ services: number; addEndpoint: Pct; removeEndpoint: Pct; operationsPerChange: number }>; targets: Record<string, number | null> }
const ipvsFile = path.join(path.dirname(file), 'ipvs.json');
if (fs.existsSync(ipvsFile)) {
  const ip = JSON.parse(fs.readFileSync(ipvsFile, 'utf8')) as IpvsResults;
  const o: string[] = ['', `IPVS, run of ${ip.date.slice(0, 10)} in the qemu guest (kernel ${String(ip.machine.guestKernel)}, TCG). Ratios are peer time / svcplane time in the same run.`, ''];
  o.push('| Services × endpoints | svcplane (warm) | svcplane (first sync of a process) | `ip -batch` addresses + `ipvsadm --restore` | ratio | svcplane binding addresses | peer binding routes |', '|---|---|---|---|---|---|---|');
  for (const c of ip.full) {
    o.push(`| ${c.services} × ${c.endpointsPerService} | ${c.svcplane.seconds.toFixed(2)} s | ${c.svcplane.coldSeconds.toFixed(2)} s | ${c.peer.ipBatchSeconds.toFixed(2)} + ${c.peer.ipvsadmRestoreSeconds.toFixed(2)} = ${c.peer.seconds.toFixed(2)} s | ${c.ratio.toFixed(1)}× | ${c.variants.svcplaneAddressMode.toFixed(2)} s | ${c.variants.peerWithRoutes.toFixed(2)} s |`);
  }
  o.push('', '| Incremental change (p50 / p99 ms) | add endpoint | remove endpoint (drain + delete) |', '|---|---|---|');
  for (const c of ip.incremental) o.push(`| ${c.services} Services | ${c.addEndpoint.p50Ms.toFixed(2)} / ${c.addEndpoint.p99Ms.toFixed(2)} | ${c.removeEndpoint.p50Ms.toFixed(2)} / ${c.removeEndpoint.p99Ms.toFixed(2)} |`);
  o.push('', '| Target | this run |', '|---|---|');
  for (const [k, v] of Object.entries(ip.targets)) o.push(`| ${k} | ${v === null ? 'n/a' : v.toFixed(2)} |`);
  console.log(o.join('\n'));
}

// bench/results/affinity.json, when present (`npm run bench:affinity`).
interface AffTimed { seconds: number | null; timedOut?: boolean; operations?: number }
interface AffResults {
  date: string;
  machine: Record<string, unknown>;
  full: Array<{ services: number; svcplane: { none: AffTimed; affinity: AffTimed }; kubeProxyNft: { none: AffTimed; affinity: AffTimed } }>;
  incremental: Array<{ services: number; addEndpoint: Pct; removeEndpoint: Pct; operationsPerChange: Record<string, number> }>;
  dataplane: Array<{ services: number; svcplane: Lat | null; kubeProxyNft: Lat | null }>;
  summary: Record<string, number | null>;
}
const affFile = path.join(path.dirname(file), 'affinity.json');
if (fs.existsSync(affFile)) {
  const a = JSON.parse(fs.readFileSync(affFile, 'utf8')) as AffResults;
  const o: string[] = ['', `sessionAffinity ClientIP, run of ${a.date.slice(0, 10)} on ${String(a.machine.cpus)} CPUs, kernel ${String(a.machine.kernel)}.`, ''];
  const secs = (x: AffTimed) => (x.seconds !== null ? `${x.seconds.toFixed(3)} s` : x.timedOut ? '> 120 s' : 'failed');
  const over = (x: AffTimed, base: AffTimed) => (!base.seconds ? '' : x.seconds !== null ? ` (${(x.seconds / base.seconds).toFixed(1)}×)` : x.timedOut ? ` (> ${(120 / base.seconds).toFixed(0)}×)` : '');
  o.push('| Full sync, Services × 2 | svcplane | svcplane, all with affinity | kube-proxy `nft -f` | kube-proxy `nft -f`, all with affinity |', '|---|---|---|---|---|');
  for (const c of a.full) {
    o.push(`| ${c.services} | ${secs(c.svcplane.none)} | ${secs(c.svcplane.affinity)} | ${secs(c.kubeProxyNft.none)}${over(c.kubeProxyNft.none, c.svcplane.none)} | ${secs(c.kubeProxyNft.affinity)}${over(c.kubeProxyNft.affinity, c.svcplane.affinity)} |`);
  }
  o.push('', '| Incremental change, affinity Services (p50 / p99 ms) | add endpoint | remove endpoint | operations |', '|---|---|---|---|');
  for (const c of a.incremental) o.push(`| ${c.services} Services | ${c.addEndpoint.p50Ms.toFixed(2)} / ${c.addEndpoint.p99Ms.toFixed(2)} | ${c.removeEndpoint.p50Ms.toFixed(2)} / ${c.removeEndpoint.p99Ms.toFixed(2)} | ${c.operationsPerChange.addEndpoint} / ${c.operationsPerChange.removeEndpoint} |`);
  o.push('', '| New connections of a remembered client, p50 / p99 µs | svcplane | kube-proxy nftables |', '|---|---|---|');
  const f = (l: Lat | null) => (l && l.p50Us !== null && l.p99Us !== null ? `${l.p50Us.toFixed(0)} / ${l.p99Us.toFixed(0)}` : 'not measured');
  for (const c of a.dataplane) o.push(`| ${c.services} affinity Services | ${f(c.svcplane)} | ${f(c.kubeProxyNft)} |`);
  o.push('', '| Ratio | this run |', '|---|---|');
  for (const [k, v] of Object.entries(a.summary)) o.push(`| ${k} | ${v === null ? 'n/a' : v.toFixed(2)} |`);
  console.log(o.join('\n'));
}

// bench/results/kernels.json: the nftables mode on each kernel of the matrix (bench/kernels.ts).
interface KernelRun {
  kernel: string;
  emulation: string;
  missing: string[];
  full: Array<{ services: number; tools: Record<string, Tool>; ratios: Record<string, number | null> }>;
  incremental: Array<{ services: number; addEndpoint: Pct; removeEndpoint: Pct }>;
  dataplane: Array<{ services: number; chosen: Lat | null; fallback: Lat | null }>;
}
const kernFile = path.join(path.dirname(file), 'kernels.json');
if (fs.existsSync(kernFile)) {
  const k = JSON.parse(fs.readFileSync(kernFile, 'utf8')) as { date: string; machine: Record<string, unknown>; runs: KernelRun[] };
  const o: string[] = ['', `Kernels, run of ${k.date.slice(0, 10)} on ${String(k.machine.cpus)} CPUs (guest kernels under qemu TCG: compare within a row only).`, ''];
  const secs = (x: Tool | undefined) => (!x ? '' : x.seconds !== null ? `${x.seconds.toFixed(2)} s` : x.timedOut ? 'timed out' : 'failed');
  const times = (x: Tool | undefined, base: Tool) => (x?.seconds && base.seconds ? ` (${(x.seconds / base.seconds).toFixed(x.seconds / base.seconds < 10 ? 2 : 0)}×)` : '');
  o.push('| kernel | shape chosen | Services × 2 | svcplane | svcplane, fallback shape | kube-proxy `nft -f` | iptables-legacy-restore |', '|---|---|---|---|---|---|---|');
  for (const run of k.runs) {
    const shape = run.missing.length ? `fallback (no ${run.missing.join(', ')})` : 'native';
    for (const c of run.full) {
      const s = c.tools.svcplane;
      o.push(`| ${run.kernel}${run.emulation === 'native' ? '' : ' (qemu)'} | ${shape} | ${c.services} | ${secs(s)} | ${secs(c.tools.svcplaneFallback)}${times(c.tools.svcplaneFallback, s)} | ${secs(c.tools.kubeProxyNft)}${times(c.tools.kubeProxyNft, s)} | ${secs(c.tools.iptablesLegacy)}${times(c.tools.iptablesLegacy, s)} |`);
    }
  }
  o.push('', '| kernel | incremental p50 / p99 ms: add endpoint, remove endpoint | new connection p50 / p99 µs: shape chosen vs fallback shape |', '|---|---|---|');
  for (const run of k.runs) {
    const f = (p: Pct) => `${p.p50Ms.toFixed(2)} / ${p.p99Ms.toFixed(2)}`;
    const inc = run.incremental.map((c) => `${c.services}: ${f(c.addEndpoint)}, ${f(c.removeEndpoint)}`).join('; ');
    const dp = run.dataplane[run.dataplane.length - 1];
    const l = (x: Lat | null) => (x && x.p50Us !== null && x.p99Us !== null ? `${x.p50Us.toFixed(0)} / ${x.p99Us.toFixed(0)}` : 'n/a');
    o.push(`| ${run.kernel} | ${inc} | ${dp ? `${l(dp.chosen)} vs ${l(dp.fallback)} (${dp.services} Services)` : ''} |`);
  }
  console.log(o.join('\n'));
}
