// `npm run bench:ebpf`: the ebpf mode (socket-level load balancing) against the physical limit and the NAT
// dataplanes, in one run on this machine, ratios reported (machines are shared and noisy).
//   data plane   TCP connect latency p50/p99 from a client to a Service with 2 endpoints at N Services: direct to
//                the pod IP (the physical limit; measured beside each mode, connect by connect in one probe run), svcplane ebpf (client in the bench's cgroup),
//                svcplane nftables, kube-proxy iptables (iptables-legacy-restore), measured by a C probe
//                (scripts/lib/netns-tools/connlat.c); request/response rate on one connection (ping-pong); bulk
//                throughput on one connection (to a C sink in each pod); each figure paired round by round with the
//                same probe direct to the pod; whether the node holds a conntrack entry for the Service address
//                (ebpf: none; the NAT modes: one per connection).
//   programming  full sync of N Services x 2 endpoints: the ebpf mode (the socket-LB maps and, in the same sync,
//                the nftables table for off-node traffic), its socket-LB part alone and the time inside bpf();
//                the nftables mode; the kernel floor (the socket-LB maps' same entries written with one raw batch per
//                map, nothing computed); one endpoint added/removed: the socket-LB part's p50/p99, round by round
//                beside the same change to a 1k-Service node programmed in a second sandbox (the 30k/1k ratio).
//   memory       map memory at N Services (the kernel's memlock figure) and the agent's RSS beside it.
// Results: bench/results/ebpf.json. `--quick`: small sizes, for a smoke run.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Dataplane } from '../src/dataplane/types';
import { type BenchDataplane, openBenchDataplane } from '../src/bench/dataplanes';
import { timeFullSync } from '../src/bench/sync';
import type { ServicePort, ServicePortKey } from '../src/model/types';
import { createSandbox, installSignalCleanup, type Sandbox } from '../scripts/lib/sandbox';
import { type SandboxCgroup, sandboxCgroup } from '../scripts/lib/sandbox-cgroup';
import type { LatencyResult } from '../scripts/lib/traffic';
import { toModel } from '../src/bench/model';
import { waitForQuiet } from '../src/bench/quiet';
import { type Percentiles, percentiles } from '../src/bench/stats';
import { withExtraEndpoint } from '../src/bench/changes';
import { renderRatioPlot } from '../src/bench/plot';
import { socketLBFloor } from '../src/bench/floor';
import { execInNetns } from '../src/bench/peers/exec';
import { underKubeProxyIptables } from './lib/dataplane';
import { type BenchService, makeServices } from '../src/bench/shape';

const RESULTS = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../bench/results' : 'results');
const PEER_TIMEOUT_MS = 300_000;
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const TARGET_IP = '198.18.100.50';
const ROUNDS = 5;
const PINGPONG_MS = 1000;
/** A second Service, for bulk throughput: its endpoints are `connlat sink` on SINK_PORT in each pod. */
const BULK_IP = '198.18.100.51';
const SINK_PORT = 9000;
/** A third, for the ping-pong: its endpoints are `connlat echo` on ECHO_PORT in each pod. */
const ECHO_IP = '198.18.100.52';
const ECHO_PORT = 9001;
const BULK_MS = 1000;
const BULK_ROUNDS = 3;
/** The reference node of the endpoint-change figures: this many Services, changed round by round beside each size. */
const REFERENCE_SERVICES = 1000;
/**
 * Endpoint-change rounds left out before recording. V8 keeps tiering up the sync's functions (concurrent TurboFan
 * compiles on the other CPU, deopts and re-optimisations) for the first several hundred syncs; a daemon is measured
 * at steady state. The early rounds' percentiles are kept in the results as `warmup`.
 */
const CHANGE_WARMUP = 1000;

interface Case {
  services: number;
  latency: Record<'direct' | 'ebpf' | 'nftables' | 'iptables', LatencyResult | null>;
  /** Request/response round trips per second on one established connection (1-line ping-pong), each mode's median round with the direct run beside it. */
  pingpong: Record<'ebpf' | 'nftables' | 'iptables', { perSecond: number; directPerSecond: number } | null>;
  /** Bytes per second on one connection, each mode's median round with the direct run beside it. */
  bulk: Record<'ebpf' | 'nftables' | 'iptables', { bytesPerSecond: number; directBytesPerSecond: number } | null>;
  /** Conntrack entries on the node whose original destination is the Service address, after CONNTRACK_CONNECTS connects. */
  conntrackToService: Record<'ebpf' | 'nftables', number>;
  fullSync: { ebpfSeconds: number; socketLBSeconds: number; bpfSyscallSeconds: number; nftablesSeconds: number; kernelFloorSeconds: number; entries: number };
  /** The socket-LB part of one partial sync; `reference`: the same change to REFERENCE_SERVICES Services, in alternate rounds. */
  endpointChange: { add: Percentiles; remove: Percentiles; reference: { services: number; add: Percentiles; remove: Percentiles }; warmup: { add: Percentiles; remove: Percentiles } };
  memory: { mapBytes: number; rssBytes: number };
  notes: string[];
}

/** build/tools/connlat (scripts/lib/netns-tools/connlat.c) in the client namespace: the kernel's path, in C. */
const CONNLAT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../build/tools/connlat' : '../build/tools/connlat');

async function probe(sb: Sandbox, args: string[], cgroup?: string): Promise<LatencyResult & { perSecond?: number; bytesPerSecond?: number }> {
  const r = await sb.exec(sb.clientNs, [CONNLAT, ...args], { cgroup, timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`connlat ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as LatencyResult & { perSecond?: number };
}

/** Connections the conntrack count is taken after (counted at once: a reset connection's entry lives 10 s). */
const CONNTRACK_CONNECTS = 200;

/**
 * Conntrack entries on the node whose original destination is addr, after CONNTRACK_CONNECTS connects to addr:80
 * from a flushed table. The count is taken right after them: entries of connections closed by reset expire within
 * 10 s (the NAT modes' figure read after the ping-pong and bulk runs was 0 in one run, thousands in another).
 */
async function conntrackAfterConnects(sb: Sandbox, addr: string, cgroup?: string): Promise<number> {
  await execInNetns(sb.nodeNsPath, ['conntrack', '-F']).catch(() => '');
  await probe(sb, ['connect', addr, '80', String(CONNTRACK_CONNECTS), '0'], cgroup);
  return execInNetns(sb.nodeNsPath, ['conntrack', '-L', '--orig-dst', addr]).then((out) => out.split('\n').filter((l) => l.includes(addr)).length, () => -1);
}

/**
 * A mode's figure and the same probe direct to the pod beside it, `rounds` times (this machine's speed drifts: a
 * direct figure taken minutes apart is no baseline); the round with the median ratio is kept, with its direct run.
 */
async function pairedRounds<T>(rounds: number, mode: () => Promise<T>, direct: () => Promise<T>, ratio: (mode: T, direct: T) => number): Promise<{ mode: T; direct: T }> {
  const all: Array<{ mode: T; direct: T }> = [];
  for (let i = 0; i < rounds; i++) {
    await waitForQuiet();
    all.push({ mode: await mode(), direct: await direct() });
  }
  all.sort((a, b) => ratio(a.mode, a.direct) - ratio(b.mode, b.direct));
  return all[Math.floor(all.length / 2)];
}

/** Bytes per second through addr:port (a sink Service), paired with direct to a pod's sink. */
async function bulk(sb: Sandbox, addr: string, cgroup?: string): Promise<{ bytesPerSecond: number; directBytesPerSecond: number }> {
  const run = async (a: string, port: number) => (await probe(sb, ['bulk', a, String(port), String(BULK_MS)], cgroup)).bytesPerSecond ?? 0;
  const r = await pairedRounds(BULK_ROUNDS, () => run(addr, 80), () => run(sb.backends[0].v4, SINK_PORT), (m, d) => m / d);
  return { bytesPerSecond: r.mode, directBytesPerSecond: r.direct };
}

/**
 * 1-byte request/response round trips per second on one connection through addr:80 (the echo Service), with a
 * connection direct to the pod that answered beside it in the same connlat run (alternate 20 ms bursts); the
 * median-ratio run of ROUNDS.
 */
async function pingpong(sb: Sandbox, addr: string, cgroup?: string): Promise<{ perSecond: number; directPerSecond: number }> {
  const runs: Array<{ perSecond: number; directPerSecond: number }> = [];
  for (let i = 0; i < ROUNDS; i++) {
    await waitForQuiet();
    const r = (await probe(sb, ['pingpong', addr, '80', String(PINGPONG_MS), String(ECHO_PORT)], cgroup)) as { perSecond?: number; directPerSecond?: number };
    if (!r.perSecond || !r.directPerSecond) throw new Error(`connlat pingpong ${addr}: no round trips: ${JSON.stringify(r)}`);
    runs.push({ perSecond: r.perSecond, directPerSecond: r.directPerSecond });
  }
  runs.sort((a, b) => a.perSecond / a.directPerSecond - b.perSecond / b.directPerSecond);
  return runs[Math.floor(runs.length / 2)];
}

/** The node a size's endpoint changes are paired with: REFERENCE_SERVICES Services in a sandbox of their own. */
interface Reference {
  proxier: Dataplane;
  model: Map<ServicePortKey, ServicePort>;
}

/**
 * One endpoint added then removed, on Services spread over the cluster, alternating round by round with the same
 * change to the reference node (so both sizes see the same machine); the socket-LB part of each sync.
 */
async function endpointChanges(proxier: Dataplane, model: Map<ServicePortKey, ServicePort>, ref: Reference, reps: number): Promise<Case['endpointChange']> {
  const warmup = Math.min(CHANGE_WARMUP, reps * 5);
  const samples = { add: [] as number[], remove: [] as number[], refAdd: [] as number[], refRemove: [] as number[], warmAdd: [] as number[], warmRemove: [] as number[] };
  const change = async (p: Dataplane, m: Map<ServicePortKey, ServicePort>, keys: ServicePortKey[], i: number): Promise<[number, number]> => {
    const sp = m.get(keys[(i * 7919) % keys.length])!;
    const a = await p.syncPartial(new Map([[sp.key, withExtraEndpoint(sp, i)]]));
    const r = await p.syncPartial(new Map([[sp.key, sp]]));
    if (a.full || r.full) throw new Error('expected partial syncs');
    return [a.phases?.socketLB ?? 0, r.phases?.socketLB ?? 0];
  };
  const keys = [...model.keys()];
  const refKeys = [...ref.model.keys()];
  await waitForQuiet();
  for (let i = 0; i < warmup + reps; i++) {
    const [a, r] = await change(proxier, model, keys, i);
    const [ra, rr] = await change(ref.proxier, ref.model, refKeys, i);
    if (i < warmup) {
      samples.warmAdd.push(a);
      samples.warmRemove.push(r);
    } else {
      samples.add.push(a);
      samples.remove.push(r);
      samples.refAdd.push(ra);
      samples.refRemove.push(rr);
    }
  }
  return {
    add: percentiles(samples.add), remove: percentiles(samples.remove),
    reference: { services: ref.model.size, add: percentiles(samples.refAdd), remove: percentiles(samples.refRemove) },
    warmup: { add: percentiles(samples.warmAdd.slice(0, 200)), remove: percentiles(samples.warmRemove.slice(0, 200)) },
  };
}

/** An ebpf-mode proxier for a sandbox's node, its hooks on the sandbox's cgroup. */
/** svcplane bench's dataplane for `mode` in the sandbox's node (the ebpf mode's hooks on the sandbox's cgroup). */
function sandboxDataplane(sb: Sandbox, place: SandboxCgroup, mode: 'ebpf' | 'nftables'): BenchDataplane {
  return openBenchDataplane(mode, { netns: sb.nodeNsPath, throwaway: false, ebpfPlace: () => place, close() {} });
}

async function oneCase(sb: Sandbox, place: SandboxCgroup, ref: Reference, n: number, connects: number, reps: number): Promise<Case> {
  const { cgroup } = place;
  const target = { clusterIP: TARGET_IP, port: 80, endpoints: sb.backends.map((b) => ({ ip: b.v4, port: 8080 })) };
  const bulkService: BenchService = { namespace: 'bench-target', name: 'sink', clusterIP: BULK_IP, port: 80, protocol: 'TCP', endpoints: sb.backends.map((b) => ({ ip: b.v4, port: SINK_PORT })) };
  const echoService: BenchService = { namespace: 'bench-target', name: 'echo', clusterIP: ECHO_IP, port: 80, protocol: 'TCP', endpoints: sb.backends.map((b) => ({ ip: b.v4, port: ECHO_PORT })) };
  const model: Map<ServicePortKey, ServicePort> = toModel([...makeServices(n, 2, { target }), bulkService, echoService]);
  const notes: string[] = [];
  const measure1 = async (addr: string, port: number, inCgroup: boolean) => (await waitForQuiet(), probe(sb, ['connect', addr, String(port), String(connects), '300'], inCgroup ? cgroup : undefined));
  // A mode's connects alternate with connects direct to a pod in the same connlat run (connect by connect: the
  // machine's drift cancels out); ROUNDS runs, the one with the median p50 ratio kept.
  const measure = async (addr: string, port: number, inCgroup = false): Promise<LatencyResult> => {
    type Paired = LatencyResult & { directP50Us?: number; directP99Us?: number };
    const runs: Paired[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await waitForQuiet();
      runs.push(await probe(sb, ['connect', addr, String(port), String(connects), '300', sb.backends[0].v4, '8080'], inCgroup ? cgroup : undefined));
    }
    const ratio = (r: Paired) => (r.p50Us ?? Infinity) / (r.directP50Us ?? 1);
    return runs.sort((a, b) => ratio(a) - ratio(b))[Math.floor(ROUNDS / 2)];
  };

  log(`${n}: direct`);
  // Nothing programmed yet: no mode to pair with, so the median p50 of ROUNDS runs.
  const directRuns: LatencyResult[] = [];
  for (let i = 0; i < ROUNDS; i++) directRuns.push(await measure1(sb.backends[0].v4, 8080, false));
  const direct = directRuns.sort((a, b) => (a.p50Us ?? 0) - (b.p50Us ?? 0))[Math.floor(ROUNDS / 2)];

  log(`${n}: ebpf`);
  const ebpfBench = sandboxDataplane(sb, place, 'ebpf');
  const { dataplane: ebpf } = ebpfBench;
  const kernel = ebpfBench.ebpf!;
  let c: Case;
  const c0 = { pingpong: { ebpf: null, nftables: null, iptables: null } as Case['pingpong'], bulk: { ebpf: null, nftables: null, iptables: null } as Case['bulk'] };
  try {
    await ebpf.prepare?.();
    await waitForQuiet();
    const { seconds: ebpfSeconds, result: full } = await timeFullSync(ebpfBench, model);
    const socketLBSeconds = (full.phases?.socketLB ?? 0) / 1e6;
    const bpfSyscallSeconds = (full.phases?.socketLBKernel ?? 0) / 1e6;
    const floor = await socketLBFloor(kernel, waitForQuiet);
    const ebpfLatency = await measure(TARGET_IP, 80, true);
    c0.pingpong.ebpf = await pingpong(sb, ECHO_IP, cgroup);
    const ctEbpf = await conntrackAfterConnects(sb, TARGET_IP, cgroup);
    c0.bulk.ebpf = await bulk(sb, BULK_IP, cgroup);
    const endpointChange = await endpointChanges(ebpf, model, ref, reps);
    const mapBytes = kernel.maps().reduce((s, m) => s + m.memlock, 0);
    const rssBytes = process.memoryUsage().rss;
    await ebpf.cleanup();
    c = {
      services: n, latency: { direct, ebpf: ebpfLatency, nftables: null, iptables: null }, pingpong: c0.pingpong, bulk: c0.bulk, conntrackToService: { ebpf: ctEbpf, nftables: 0 },
      fullSync: { ebpfSeconds, socketLBSeconds, bpfSyscallSeconds, nftablesSeconds: 0, kernelFloorSeconds: floor.seconds, entries: floor.entries },
      endpointChange, memory: { mapBytes, rssBytes }, notes,
    };
  } finally {
    ebpf.close();
  }

  log(`${n}: nftables`);
  const nftBench = sandboxDataplane(sb, place, 'nftables');
  const nft = nftBench.dataplane;
  try {
    await waitForQuiet();
    c.fullSync.nftablesSeconds = (await timeFullSync(nftBench, model)).seconds;
    c.latency.nftables = await measure(TARGET_IP, 80);
    c.pingpong.nftables = await pingpong(sb, ECHO_IP);
    c.conntrackToService.nftables = await conntrackAfterConnects(sb, TARGET_IP);
    c.bulk.nftables = await bulk(sb, BULK_IP);
    await nft.cleanup();
  } finally {
    nft.close();
  }

  log(`${n}: kube-proxy iptables (legacy)`);
  const services = [...makeServices(n, 2, { target }), bulkService, echoService];
  const ipt = await underKubeProxyIptables(sb, services, PEER_TIMEOUT_MS, async () => ({ latency: await measure(TARGET_IP, 80), pingpong: await pingpong(sb, ECHO_IP), bulk: await bulk(sb, BULK_IP) }), notes);
  if (ipt) {
    c.latency.iptables = ipt.latency;
    c.pingpong.iptables = ipt.pingpong;
    c.bulk.iptables = ipt.bulk;
  }
  const ratio = (x: LatencyResult | null) => pairedRatio(x)?.toFixed(2) ?? '-';
  log(`${n}: connect p50 vs direct: ebpf ${ratio(c.latency.ebpf)}, nftables ${ratio(c.latency.nftables)}, iptables ${ratio(c.latency.iptables)}; conntrack to the Service: ebpf ${c.conntrackToService.ebpf}, nftables ${c.conntrackToService.nftables}`);
  const bulkRatio = (x: Case['bulk']['ebpf']) => (x ? (x.bytesPerSecond / x.directBytesPerSecond).toFixed(2) : '-');
  const ppRatio = (x: Case['pingpong']['ebpf']) => (x ? (x.perSecond / x.directPerSecond).toFixed(2) : '-');
  const e = c.endpointChange;
  const us = (p: Percentiles) => `${(p.p50Ms * 1000).toFixed(0)}/${(p.p99Ms * 1000).toFixed(0)} µs`;
  log(`${n}: ping-pong vs direct: ebpf ${ppRatio(c.pingpong.ebpf)}, nftables ${ppRatio(c.pingpong.nftables)}, iptables ${ppRatio(c.pingpong.iptables)}; endpoint added p50/p99 ${us(e.add)} (${e.reference.services} Services beside it: ${us(e.reference.add)}), removed ${us(e.remove)} (${us(e.reference.remove)})`);
  log(`${n}: bulk vs direct: ebpf ${bulkRatio(c.bulk.ebpf)}, nftables ${bulkRatio(c.bulk.nftables)}, iptables ${bulkRatio(c.bulk.iptables)}; full sync: ebpf ${c.fullSync.ebpfSeconds.toFixed(3)} s (socket LB ${c.fullSync.socketLBSeconds.toFixed(3)} s, kernel floor ${c.fullSync.kernelFloorSeconds.toFixed(3)} s for ${c.fullSync.entries} entries), nftables ${c.fullSync.nftablesSeconds.toFixed(3)} s`);
  return c;
}

/** A mode's connect p50 over the direct run measured beside it (measure() keeps it as directP50Us). */
function pairedDirectP50(x: LatencyResult | null): number | undefined {
  return (x as (LatencyResult & { directP50Us?: number }) | null)?.directP50Us;
}

function pairedRatio(x: LatencyResult | null): number | null {
  const d = pairedDirectP50(x);
  return x?.p50Us && d ? x.p50Us / d : null;
}

/** TCP connect p50 of each mode over direct to the pod, measured beside it (paired rounds), against Services. */
function connectPlot(cases: Case[]): string {
  const paired = pairedRatio;
  return renderRatioPlot('TCP connect p50 / direct to the pod (same node state, paired rounds)', cases.map((c) => c.services), [
    { label: 'svcplane ebpf (socket LB)', color: '#d62728', ys: cases.map((c) => paired(c.latency.ebpf)) },
    { label: 'svcplane nftables', color: '#1f77b4', ys: cases.map((c) => paired(c.latency.nftables)) },
    { label: 'kube-proxy iptables (legacy)', color: '#2ca02c', ys: cases.map((c) => paired(c.latency.iptables)) },
  ]);
}

/** The Markdown tables README shows (`node dist/bench/ebpf.js --report [file]`). */
export function report(r: { date: string; machine: { kernel: string; cpus: number }; connects: number; cases: Case[] }): string {
  const us = (x: number | null | undefined) => (x == null ? '-' : x.toFixed(1));
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a && b ? `${(a / b).toFixed(2)}×` : '-');
  const paired = pairedDirectP50;
  const lines = [`Run of ${r.date.slice(0, 10)} on ${r.machine.cpus} CPUs, kernel ${r.machine.kernel}; ${r.connects} connects per figure, the median of ${ROUNDS} paired rounds.`, '',
    `| Services | direct, nothing programmed: connect p50 µs | ebpf: p50 µs (vs direct paired; vs nothing programmed) | nftables | kube-proxy iptables | 1-byte ping-pong/s vs direct: ebpf, nftables, iptables | bulk: ebpf, nftables, iptables vs direct | conntrack entries to the Service after ${CONNTRACK_CONNECTS} connects: ebpf, nftables |`,
    '|---|---|---|---|---|---|---|---|'];
  for (const c of r.cases) {
    const mode = (x: LatencyResult | null) => (x ? `${us(x.p50Us)} (${ratio(x.p50Us, paired(x))}; ${ratio(x.p50Us, c.latency.direct?.p50Us)})` : '-');
    const b = (x: Case['bulk']['ebpf']) => (x ? ratio(x.bytesPerSecond, x.directBytesPerSecond) : '-');
    const pp = (x: Case['pingpong']['ebpf']) => (x ? ratio(x.perSecond, x.directPerSecond) : '-');
    lines.push(`| ${c.services} | ${us(c.latency.direct?.p50Us)} | ${mode(c.latency.ebpf)} | ${mode(c.latency.nftables)} | ${mode(c.latency.iptables)} | ${pp(c.pingpong.ebpf)}, ${pp(c.pingpong.nftables)}, ${pp(c.pingpong.iptables)} | ${b(c.bulk.ebpf)}, ${b(c.bulk.nftables)}, ${b(c.bulk.iptables)} | ${c.conntrackToService.ebpf}, ${c.conntrackToService.nftables} |`);
  }
  lines.push('', '| Services × 2 endpoints | ebpf full sync (socket-LB part; in bpf()) | kernel floor of the socket-LB part (entries) | nftables full sync | one endpoint added; removed: socket-LB part p50 / p99 µs | the same vs 1k Services beside it: p50, p99 | map memory | agent RSS |', '|---|---|---|---|---|---|---|---|');
  const s = (x: number) => `${x.toFixed(3)} s`;
  const mib = (x: number) => `${(x / 2 ** 20).toFixed(1)} MiB`;
  for (const c of r.cases) {
    const f = c.fullSync;
    const pc = (p: Percentiles) => `${(p.p50Ms * 1000).toFixed(0)} / ${(p.p99Ms * 1000).toFixed(0)}`;
    const e = c.endpointChange;
    const vs = (p: Percentiles, q: Percentiles) => `${ratio(p.p50Ms, q.p50Ms)}, ${ratio(p.p99Ms, q.p99Ms)}`;
    lines.push(`| ${c.services} | ${s(f.ebpfSeconds)} (${s(f.socketLBSeconds)}; ${s(f.bpfSyscallSeconds)}) | ${s(f.kernelFloorSeconds)} (${f.entries}) | ${s(f.nftablesSeconds)} | ${pc(e.add)}; ${pc(e.remove)} | ${vs(e.add, e.reference.add)}; ${vs(e.remove, e.reference.remove)} | ${mib(c.memory.mapBytes)} | ${mib(c.memory.rssBytes)} |`);
  }
  return lines.join('\n');
}

/** `connlat MODE PORT` (sink, echo) in a pod's namespace, until the sandbox is destroyed (which kills what runs in it). */
async function startServer(sb: Sandbox, ns: string, mode: 'sink' | 'echo', port: number): Promise<void> {
  const child = sb.spawn(ns, [CONNLAT, mode, String(port)]);
  await new Promise<void>((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`connlat ${mode} in ${ns} exited ${code}: ${stderr.trim()}`)));
  });
}

async function main(): Promise<void> {
  const at = process.argv.indexOf('--report');
  if (at >= 0) {
    console.log(report(JSON.parse(fs.readFileSync(process.argv[at + 1] ?? path.join(RESULTS, 'ebpf.json'), 'utf8'))));
    return;
  }
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (network namespaces, BPF)');
  const quick = process.argv.includes('--quick');
  const sizes = quick ? [1, 1000] : [1, 10_000, 30_000];
  const connects = quick ? 1000 : 3000;
  const reps = quick ? 100 : 1000;
  installSignalCleanup();
  const sb = await createSandbox({ backends: 2, ports: [8080] });
  const place = sandboxCgroup(sb.prefix);
  const cases: Case[] = [];
  // The reference node of the endpoint-change figures: its own namespace, bpffs root and cgroup, no traffic.
  const refSb = await createSandbox({ backends: 0, ports: [8080] });
  const refPlace = sandboxCgroup(refSb.prefix);
  const ref: Reference = { proxier: sandboxDataplane(refSb, refPlace, 'ebpf').dataplane, model: toModel(makeServices(REFERENCE_SERVICES, 2)) };
  try {
    await ref.proxier.syncFull(ref.model);
    for (const b of sb.backends) {
      await startServer(sb, b.ns, 'sink', SINK_PORT);
      await startServer(sb, b.ns, 'echo', ECHO_PORT);
    }
    for (const n of sizes) cases.push(await oneCase(sb, place, ref, n, connects, reps));
  } finally {
    await ref.proxier.cleanup().catch(() => false);
    ref.proxier.close();
    await refSb.destroy();
    refPlace.remove();
    await sb.destroy();
    place.remove();
  }
  const result = {
    date: new Date().toISOString(),
    machine: { kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), cpus: (await import('node:os')).cpus().length },
    quick,
    connects,
    cases,
  };
  const file = path.join(RESULTS, quick ? 'ebpf-quick.json' : 'ebpf.json');
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  fs.writeFileSync(file.replace(/\.json$/, '-connect.svg'), connectPlot(cases));
  log(`written ${file}`);
  console.log(report(result));
}

main().catch((e: unknown) => {
  console.error(`bench:ebpf failed: ${e instanceof Error ? e.stack : String(e)}`);
  process.exit(1);
});
