// The agent as a daemon: `svcplane run` (the real CLI, a child process) watching the API-server double with N
// Services (one port, one EndpointSlice of 2 endpoints each; the same Services as bench/nftables.ts), programming a
// fresh network namespace. Measures, per size and minSyncPeriod:
// * network programming latency over 200 endpoint changes: from the EndpointSlice's last-change-trigger-time
//   annotation (stamped when the bench writes the change) to the kernel's ack, as the agent reports it per sync
//   (the same numbers as kubeproxy_network_programming_duration_seconds, unbucketed);
// * the agent's RSS once the initial full sync is done and after the changes (VmRSS), and its peak (VmHWM);
// * time from start to the first full sync.
// Results: bench/results/daemon.json. Targets (issue 3): p99 < 100 ms with minSyncPeriod 0; RSS < 150 MB at 30k.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApiServerDouble, type KubeObject } from '../test/apiserver/double';
import { makeServices, portNameOf, type BenchService } from './peers/shape';
import { BENCH_NODE, benchNodeOf } from './lib/model';

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

function sliceObject(b: BenchService, endpoints: Array<{ ip: string; port: number }>, trigger?: string): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: {
      name: `${b.name}-x1`, namespace: b.namespace, labels: { 'kubernetes.io/service-name': b.name },
      ...(trigger ? { annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': trigger } } : {}),
    },
    addressType: 'IPv4',
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: benchNodeOf(e.ip) })),
    ports: [{ name: portNameOf(b), protocol: b.protocol, port: endpoints[0]?.port ?? b.port }],
  };
}

function memOf(pid: number): { rssMB: number; peakMB: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0);
  return { rssMB: Math.round(kb('VmRSS') / 1024), peakMB: Math.round(kb('VmHWM') / 1024) };
}

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

interface Line {
  msg: string;
  full?: boolean;
  programmingLatencyMs?: number[] | { count: number; max: number };
  ms?: number;
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
  /** After IDLE_MS with nothing to do: V8's memory reducer has returned what the initial sync grew. */
  rssIdleMB: number;
  peakRssMB: number;
}

const IDLE_MS = 45_000;

async function runCase(n: number, minSync: string, changes: number, spacingMs: number): Promise<CaseResult> {
  const services = makeServices(n, 2, { withNodePorts: true });
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
  const child = spawn(process.execPath, [SVCPLANE, 'run', '--kubeconfig', path.join(dir, 'kubeconfig'), '--hostname-override', BENCH_NODE,
    '--netns', `/run/netns/${ns}`, '--cluster-cidr', '198.18.0.0/17', '--iptables-min-sync-period', minSync, '--iptables-sync-period', '1h',
    '--healthz-bind-address', '', '--metrics-bind-address', '', '--log-format', 'json'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let buf = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
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
      await new Promise((r) => setTimeout(r, 10));
    }
  };
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
      latencyMs: { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), max: Math.max(...lat), n: lat.length },
      syncs: lines.slice(before).filter((l) => l.msg === 'synced').length,
      rssAfterFirstSyncMB: afterFirst.rssMB, rssAfterChangesMB: after.rssMB, rssIdleMB: idle.rssMB, peakRssMB: idle.peakMB,
    };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await api.stop();
    spawnSyncOk('ip', ['netns', 'del', ns]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function spawnSyncOk(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (network namespaces)');
  const quick = process.argv.includes('--quick');
  const outIdx = process.argv.indexOf('--out');
  const out = outIdx > 0 ? process.argv[outIdx + 1] : path.join(RESULTS, 'daemon.json');
  const changes = quick ? 40 : 200;
  const cases: Array<[number, string, number]> = quick
    ? [[1000, '0s', 100], [1000, '1s', 100]]
    : [[10_000, '0s', 150], [10_000, '1s', 150], [30_000, '0s', 150]];
  const results: CaseResult[] = [];
  for (const [n, minSync, spacing] of cases) {
    log(`daemon ${n} Services, minSyncPeriod ${minSync}: ${changes} endpoint changes every ${spacing} ms`);
    const r = await runCase(n, minSync, changes, spacing);
    log(`  first full sync ${r.firstFullSyncSeconds.toFixed(1)} s; latency p50 ${r.latencyMs.p50} ms p99 ${r.latencyMs.p99} ms; RSS ${r.rssAfterChangesMB} MB, idle ${r.rssIdleMB} MB (peak ${r.peakRssMB} MB)`);
    results.push(r);
  }
  const at = (n: number, m: string) => results.find((r) => r.services === n && r.minSyncPeriod === m);
  const doc = {
    date: new Date().toISOString(),
    machine: { kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    note: 'svcplane run (child process) against the API-server double; latency = EndpointSlice trigger time -> kernel ack, per change. Shared, noisy machine.',
    cases: results,
    targets: {
      'programming latency p99 ms at 10k, minSyncPeriod 0 (target < 100)': at(10_000, '0s')?.latencyMs.p99 ?? null,
      'RSS MB at 30k, idle (target < 150)': at(30_000, '0s')?.rssIdleMB ?? null,
      'peak RSS MB at 30k (initial full sync)': at(30_000, '0s')?.peakRssMB ?? null,
    },
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
  log(`wrote ${out}`);
  process.stdout.write(JSON.stringify(doc.targets, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
