// The agent as a daemon: `svcplane run` (the real CLI, a child process) watching the API-server double with N
// Services (one port, one EndpointSlice of 2 endpoints each; the same Services as bench/nftables.ts), programming a
// fresh network namespace. Measures, per size and minSyncPeriod:
// * network programming latency over 200 endpoint changes: from the EndpointSlice's last-change-trigger-time
//   annotation (stamped when the bench writes the change) to the kernel's ack, as the agent reports it per sync
//   (the same numbers as kubeproxy_network_programming_duration_seconds, unbucketed);
// * the agent's RSS once the initial full sync is done and after the changes (VmRSS), and its peak (VmHWM);
// * time from start to the first full sync.
// And a churn case (`--churn` runs it alone and merges it into the results; the full run has it too): at 10k
// Services, 200k EndpointSlice updates shaped as rolling deployments (a new pod added unready, made ready, an old
// one terminating, then gone), written to the double as fast as it takes them but in bounded batches (never more
// than CHURN_AHEAD updates ahead of what the agent has programmed), then the agent is left alone until its syncs
// stop: RSS idle before the churn (rssIdleMB) and idle after it (rssAfterChurnMB). The double's own memory (its
// event history) is in this process; only the agent child's VmRSS is measured.
// Diagnosis only (never the published figures): SVCPLANE_BENCH_DIAG=DIR preloads bench/lib/diag-preload.js into the
// agent, which writes V8 heap statistics and its smaps (and, with SVCPLANE_BENCH_SNAPSHOT=1, a heap snapshot) to DIR
// at each phase; SVCPLANE_BENCH_NODE_ARGS adds node flags (e.g. "--trace-gc --trace-gc-verbose"); the agent's stdout
// and stderr are kept in DIR. `--churn-idle-seconds S` waits longer after the churn (RSS sampled every 5 s).
// Results: bench/results/daemon.json. Targets: p99 < 100 ms with minSyncPeriod 0; RSS < 150 MB at 30k;
// RSS idle after churn at 10k within the same 150 MB.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApiServerDouble, type KubeObject } from '../test/apiserver/double';
import { makeServices, portNameOf, type BenchService } from '../src/bench/shape';
import { BENCH_NODE, benchNodeOf } from '../src/bench/model';
import { latencyOf } from '../src/bench/stats';

const REPO = path.resolve(__dirname, '../..');
const SVCPLANE = path.join(REPO, 'bin', 'svcplane.js');
const RESULTS = path.join(REPO, 'bench', 'results');

function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);
}

function serviceObject(b: BenchService): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: b.name, namespace: b.namespace },
    spec: {
      type: b.nodePort ? 'NodePort' : 'ClusterIP', clusterIP: b.clusterIP, clusterIPs: [b.clusterIP], ipFamilies: ['IPv4'],
      ports: [{ name: portNameOf(b), protocol: b.protocol, port: b.port, targetPort: b.endpoints[0]?.port ?? b.port, ...(b.nodePort ? { nodePort: b.nodePort } : {}) }],
    },
  };
}

/** An endpoint as a rolling deployment shows it: a new pod not yet ready, a ready one, an old one terminating. */
type PodState = 'ready' | 'unready' | 'terminating';

function conditionsOf(state: PodState | undefined): { ready: boolean; serving: boolean; terminating: boolean } {
  if (state === 'unready') return { ready: false, serving: false, terminating: false };
  if (state === 'terminating') return { ready: false, serving: true, terminating: true };
  return { ready: true, serving: true, terminating: false };
}

function sliceObject(b: BenchService, endpoints: Array<{ ip: string; port: number; state?: PodState }>, trigger?: string): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: {
      name: `${b.name}-x1`, namespace: b.namespace, labels: { 'kubernetes.io/service-name': b.name },
      ...(trigger ? { annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': trigger } } : {}),
    },
    addressType: 'IPv4',
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: conditionsOf(e.state), nodeName: benchNodeOf(e.ip) })),
    ports: [{ name: portNameOf(b), protocol: b.protocol, port: endpoints[0]?.port ?? b.port }],
  };
}

function memOf(pid: number): { rssMB: number; peakMB: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0);
  return { rssMB: Math.round(kb('VmRSS') / 1024), peakMB: Math.round(kb('VmHWM') / 1024) };
}

interface Line {
  msg: string;
  full?: boolean;
  programmingLatencyMs?: number[] | { count: number; max: number };
  ms?: number;
}

/** Programming latencies the agent logged (one per EndpointSlice update it carried into a sync). */
function latencyCount(l: Line): number {
  const p = l.programmingLatencyMs;
  return Array.isArray(p) ? p.length : p ? p.count : 0;
}

interface CaseResult {
  services: number;
  minSyncPeriod: string;
  firstFullSyncSeconds: number;
  changes: number;
  latencyMs: { p50: number; p99: number; max: number; n: number };
  syncs: number;
  rssAfterFirstSyncMB: number;
  rssAfterChangesMB: number;
  /** After IDLE_MS with nothing to do (the agent hands V8's heap back once quiet: src/sync/memory.ts). */
  rssIdleMB: number;
  peakRssMB: number;
}

const IDLE_MS = 45_000;

interface RunningAgent {
  child: ChildProcess;
  lines: Line[];
  waitFor(pred: () => boolean, ms: number): Promise<void>;
  /** Diagnosis mode only: heap statistics (and a snapshot, if asked) written by the agent under this label. */
  diag(label: string): Promise<unknown>;
  stop(): Promise<void>;
}

/** The double loaded with `services` (one slice each), and `svcplane run` started against it in a fresh namespace. */
async function startAgent(services: BenchService[], minSync: string): Promise<RunningAgent & { api: ApiServerDouble }> {
  const n = services.length;
  const api = new ApiServerDouble({ bookmarkIntervalMs: 60_000 });
  await api.start();
  api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: BENCH_NODE }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.1' }] } });
  for (const b of services) {
    api.apply(serviceObject(b));
    api.apply(sliceObject(b, b.endpoints));
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-daemon-'));
  fs.writeFileSync(path.join(dir, 'kubeconfig'), api.kubeconfig());
  const ns = `svpd${process.pid}x${n}x${minSync.replace(/\W/g, '')}`;
  spawnSyncOk('ip', ['netns', 'add', ns]);
  const lines: Line[] = [];
  const diagDir = process.env.SVCPLANE_BENCH_DIAG;
  // Diagnosis: extra node/V8 flags for the agent (e.g. --trace-gc), its stdout kept in DIR/agent-<n>.out.
  const nodeArgs = diagDir ? ['--require', path.join(__dirname, 'lib', 'diag-preload.js'), ...(process.env.SVCPLANE_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)] : [];
  const stdout = diagDir ? fs.openSync(path.join(diagDir, `agent-${n}.out`), 'w') : 'ignore';
  const child = spawn(process.execPath, [...nodeArgs, SVCPLANE, 'run', '--kubeconfig', path.join(dir, 'kubeconfig'), '--hostname-override', BENCH_NODE,
    '--netns', `/run/netns/${ns}`, '--cluster-cidr', '198.18.0.0/17', '--iptables-min-sync-period', minSync, '--iptables-sync-period', '1h',
    '--healthz-bind-address', '', '--metrics-bind-address', '', '--log-format', 'json', '--v=2'], { stdio: ['ignore', stdout, 'pipe'], env: { ...process.env, ...(diagDir ? { SVCPLANE_DIAG_DIR: diagDir } : {}) } });
  if (typeof stdout === 'number') fs.closeSync(stdout);
  let buf = '';
  const errCopy = diagDir ? fs.createWriteStream(path.join(diagDir, `agent-${n}.err`)) : undefined;
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    errCopy?.write(c);
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      try {
        lines.push(JSON.parse(buf.slice(0, nl)) as Line);
      } catch {
        /* not ours */
      }
      buf = buf.slice(nl + 1);
    }
  });
  const waitFor = async (pred: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out; last log lines: ${JSON.stringify(lines.slice(-5))}`);
      if (child.exitCode !== null) throw new Error(`the agent exited (${child.exitCode}); last log lines: ${JSON.stringify(lines.slice(-5))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  let diagSeq = 0;
  const diag = async (label: string): Promise<unknown> => {
    if (!diagDir) return undefined;
    const file = path.join(diagDir, `${String(++diagSeq).padStart(2, '0')}-${n}-${label}.json`);
    fs.writeFileSync(path.join(diagDir, 'next-label'), path.basename(file, '.json'));
    child.kill('SIGUSR2');
    const end = Date.now() + 300_000;
    while (!fs.existsSync(file) && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
    const stats = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    log(`  diag ${label}: ${JSON.stringify(stats)}`);
    return stats;
  };
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    await api.stop();
    spawnSyncOk('ip', ['netns', 'del', ns]);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { api, child, lines, waitFor, diag, stop };
}

async function runCase(n: number, minSync: string, changes: number, spacingMs: number): Promise<CaseResult> {
  const services = makeServices(n, 2, { withNodePorts: true });
  const { api, child, lines, waitFor, stop } = await startAgent(services, minSync);
  try {
    const t0 = Date.now();
    await waitFor(() => lines.some((l) => l.msg === 'synced' && l.full), 600_000);
    const firstFullSyncSeconds = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    const afterFirst = memOf(child.pid!);
    const before = lines.length;
    // Endpoint changes: a random Service's second endpoint moves to another address (an endpoint replaced).
    let seq = 0;
    for (let i = 0; i < changes; i++) {
      const b = services[Math.floor(Math.random() * services.length)];
      const eps = [b.endpoints[0], { ip: `198.18.${1 + (seq % 126)}.${(++seq * 7) % 250 + 1}`, port: b.endpoints[0].port }];
      api.apply(sliceObject(b, eps, new Date().toISOString()));
      await new Promise((r) => setTimeout(r, spacingMs));
    }
    const latencies = (): number[] => lines.slice(before).flatMap((l) => (Array.isArray(l.programmingLatencyMs) ? l.programmingLatencyMs : []));
    await waitFor(() => latencies().length >= changes, 120_000);
    const after = memOf(child.pid!);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const idle = memOf(child.pid!);
    const lat = latencies();
    return {
      services: n, minSyncPeriod: minSync, firstFullSyncSeconds, changes,
      latencyMs: ((l) => ({ p50: l.p50Ms, p99: l.p99Ms, max: l.maxMs, n: lat.length }))(latencyOf(lat)),
      syncs: lines.slice(before).filter((l) => l.msg === 'synced').length,
      rssAfterFirstSyncMB: afterFirst.rssMB, rssAfterChangesMB: after.rssMB, rssIdleMB: idle.rssMB, peakRssMB: idle.peakMB,
    };
  } finally {
    await stop();
  }
}

/** Updates written ahead of what the agent has programmed, at most (the bounded batches of the churn). */
const CHURN_AHEAD = 4000;
const CHURN_BATCH = 500;

interface ChurnResult {
  kind: 'churn';
  services: number;
  minSyncPeriod: string;
  firstFullSyncSeconds: number;
  rssAfterFirstSyncMB: number;
  /** IDLE_MS after the first full sync, before any update. */
  rssIdleMB: number;
  /** EndpointSlice updates written (each one programmed: counted by the agent's per-sync latencies). */
  updates: number;
  churnSeconds: number;
  syncs: number;
  rssEndOfChurnMB: number;
  /** idleSeconds after the agent's last sync following the churn. */
  rssAfterChurnMB: number;
  idleSeconds: number;
  /** RSS every 5 s of that idle time. */
  rssIdleTimelineMB: number[];
  peakRssMB: number;
  /** Diagnosis mode only: the agent's heap statistics at each phase. */
  heap?: Record<string, unknown>;
}

/**
 * Rolling deployments: each Service's two pods are replaced one at a time (maxSurge 1, maxUnavailable 0), four
 * slice updates per replaced pod: new pod added unready, made ready, an old pod terminating, the old pod gone.
 * Services take turns (update i goes to Service i mod n), so every Service's slice changes `updates / n` times.
 */
async function runChurn(n: number, minSync: string, updates: number, idleMs: number): Promise<ChurnResult> {
  const services = makeServices(n, 2, { withNodePorts: true });
  const { api, child, lines, waitFor, diag, stop } = await startAgent(services, minSync);
  const heap: Record<string, unknown> = {};
  try {
    const t0 = Date.now();
    await waitFor(() => lines.some((l) => l.msg === 'synced' && l.full), 600_000);
    const firstFullSyncSeconds = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    const afterFirst = memOf(child.pid!);
    heap.afterFirstSync = await diag('after-first-sync');
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const idle = memOf(child.pid!);
    heap.idle = await diag('idle');
    log(`  after first sync ${afterFirst.rssMB} MB, idle ${idle.rssMB} MB; churning ${updates} updates`);

    const before = lines.length;
    const programmed = () => {
      let c = 0;
      for (let i = before; i < lines.length; i++) c += latencyCount(lines[i]);
      return c;
    };
    // Per Service: its pods now, and where its rollout stands (0: add a pod unready, 1: make it ready, 2: the
    // oldest pod terminating, 3: the oldest pod gone).
    const pods = services.map((b) => b.endpoints.map((e) => ({ ip: e.ip, port: e.port, state: 'ready' as PodState })));
    const step = new Array<number>(n).fill(0);
    const POOL = 32_512; // the filler endpoint pool (src/bench/shape.ts): 198.18.1.0 - 198.18.127.255
    let nextPod = 20_000; // past the 10k x 2 initial pods
    const podIP = () => {
      const k = 1 * 256 + (nextPod++ % POOL);
      return `198.18.${k >> 8}.${k & 255}`;
    };
    const tc = Date.now();
    let written = 0;
    while (written < updates) {
      await waitFor(() => written - programmed() <= CHURN_AHEAD - CHURN_BATCH, 600_000);
      const trigger = new Date().toISOString();
      for (let k = 0; k < CHURN_BATCH && written < updates; k++, written++) {
        const i = written % n;
        const b = services[i];
        const p = pods[i];
        switch (step[i]) {
          case 0: p.push({ ip: podIP(), port: p[0].port, state: 'unready' }); break;
          case 1: p[p.length - 1].state = 'ready'; break;
          case 2: p[0].state = 'terminating'; break;
          case 3: p.shift(); break;
        }
        step[i] = (step[i] + 1) % 4;
        api.apply(sliceObject(b, p, trigger));
      }
    }
    await waitFor(() => programmed() >= updates, 600_000);
    const churnSeconds = (Date.now() - tc) / 1000;
    const endOfChurn = memOf(child.pid!);
    log(`  churn done in ${churnSeconds.toFixed(0)} s, RSS ${endOfChurn.rssMB} MB; waiting for the syncs to stop`);
    // Idle: no sync for idleMs (nothing forced). RSS sampled every 5 s meanwhile, from the last sync on.
    let lastSync = lines.length;
    let quietSince = Date.now();
    let timeline: number[] = [];
    while (Date.now() - quietSince < idleMs) {
      await new Promise((r) => setTimeout(r, 5000));
      if (lines.slice(lastSync).some((l) => l.msg === 'synced')) {
        quietSince = Date.now();
        timeline = [];
      }
      lastSync = lines.length;
      timeline.push(memOf(child.pid!).rssMB);
    }
    const afterChurn = memOf(child.pid!);
    heap.afterChurn = await diag('after-churn');
    return {
      kind: 'churn', services: n, minSyncPeriod: minSync, firstFullSyncSeconds,
      rssAfterFirstSyncMB: afterFirst.rssMB, rssIdleMB: idle.rssMB,
      updates: programmed(), churnSeconds, syncs: lines.slice(before).filter((l) => l.msg === 'synced').length,
      rssEndOfChurnMB: endOfChurn.rssMB, rssAfterChurnMB: afterChurn.rssMB, idleSeconds: idleMs / 1000, rssIdleTimelineMB: timeline, peakRssMB: afterChurn.peakMB,
      ...(process.env.SVCPLANE_BENCH_DIAG ? { heap } : {}),
    };
  } finally {
    await stop();
  }
}

function spawnSyncOk(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

function argOf(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (network namespaces)');
  const quick = process.argv.includes('--quick');
  // --churn: only the churn case, merged into the results already there (the other cases' figures are kept).
  const churnOnly = process.argv.includes('--churn');
  const out = argOf('--out') ?? path.join(RESULTS, 'daemon.json');
  const changes = quick ? 40 : 200;
  const cases: Array<[number, string, number]> = churnOnly
    ? []
    : quick ? [[1000, '0s', 100], [1000, '1s', 100]] : [[10_000, '0s', 150], [10_000, '1s', 150], [30_000, '0s', 150]];
  const churnServices = Number(argOf('--churn-services') ?? (quick ? 1000 : 10_000));
  const churnUpdates = Number(argOf('--churn-updates') ?? (quick ? 20_000 : 200_000));
  // kube-proxy's and the DaemonSet's default minSyncPeriod.
  const churnMinSync = argOf('--churn-min-sync') ?? '1s';
  const results: Array<CaseResult | ChurnResult> = [];
  for (const [n, minSync, spacing] of cases) {
    log(`daemon ${n} Services, minSyncPeriod ${minSync}: ${changes} endpoint changes every ${spacing} ms`);
    const r = await runCase(n, minSync, changes, spacing);
    log(`  first full sync ${r.firstFullSyncSeconds.toFixed(1)} s; latency p50 ${r.latencyMs.p50} ms p99 ${r.latencyMs.p99} ms; RSS ${r.rssAfterChangesMB} MB, idle ${r.rssIdleMB} MB (peak ${r.peakRssMB} MB)`);
    results.push(r);
  }
  log(`daemon ${churnServices} Services, minSyncPeriod ${churnMinSync}: churn of ${churnUpdates} EndpointSlice updates`);
  const churn = await runChurn(churnServices, churnMinSync, churnUpdates, Number(argOf('--churn-idle-seconds') ?? IDLE_MS / 1000) * 1000);
  log(`  RSS idle ${churn.rssIdleMB} MB before, ${churn.rssAfterChurnMB} MB idle after ${churn.updates} updates in ${churn.churnSeconds.toFixed(0)} s (peak ${churn.peakRssMB} MB)`);
  results.push(churn);
  if (churnOnly && fs.existsSync(out)) {
    // Keep the other cases' figures (from their own run), replacing only the churn case.
    const prev = JSON.parse(fs.readFileSync(out, 'utf8')) as { cases: Array<CaseResult | ChurnResult> };
    results.unshift(...prev.cases.filter((c) => !('kind' in c && c.kind === 'churn')));
  }
  const at = (n: number, m: string) => results.find((r): r is CaseResult => !('kind' in r) && r.services === n && r.minSyncPeriod === m);
  const churned = results.find((r): r is ChurnResult => 'kind' in r && r.kind === 'churn');
  const doc = {
    date: new Date().toISOString(),
    ...(churnOnly ? { churnDate: new Date().toISOString() } : {}),
    machine: { kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    note: 'svcplane run (child process) against the API-server double; latency = EndpointSlice trigger time -> kernel ack, per change. Shared, noisy machine.',
    cases: results,
    targets: {
      'programming latency p99 ms at 10k, minSyncPeriod 0 (target < 100)': at(10_000, '0s')?.latencyMs.p99 ?? null,
      'RSS MB at 30k, idle (target < 150)': at(30_000, '0s')?.rssIdleMB ?? null,
      'peak RSS MB at 30k (initial full sync)': at(30_000, '0s')?.peakRssMB ?? null,
      [`RSS MB at ${churnServices / 1000}k, idle after ${churnUpdates / 1000}k EndpointSlice updates (target < 150)`]: churned?.rssAfterChurnMB ?? null,
      [`RSS MB at ${churnServices / 1000}k, idle before them`]: churned?.rssIdleMB ?? null,
    },
  };
  if (churnOnly && fs.existsSync(out)) {
    // The other cases keep their run's date and machine; the churn's are beside them.
    const prev = JSON.parse(fs.readFileSync(out, 'utf8')) as { date: string; machine: typeof doc.machine };
    Object.assign(doc, { date: prev.date, machine: prev.machine, churnMachine: doc.machine });
  }
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
  log(`wrote ${out}`);
  process.stdout.write(JSON.stringify(doc.targets, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
