// `npm run bench:nftables`: svcplane's nftables dataplane against the real peers, in one run, on this machine.
//   full sync      svcplane vs `nft -f` of kube-proxy's nftables-mode ruleset, iptables-legacy-restore and
//                  iptables-nft-restore of its iptables-mode rules, and the kernel's floor (svcplane's own batch,
//                  from its send to the kernel's last reply); each case in a fresh network namespace.
//   incremental    one endpoint added / one removed / one Service added, p50 and p99 over >= 50 repetitions.
//   data plane     new-connection latency (connect -> accept through the DNAT) to the Service whose rules come
//                  last, with 1 .. 30k Services programmed, for svcplane, kube-proxy iptables and kube-proxy nftables.
// Results: bench/results/nftables.json and bench/results/nftables-sync.svg. Quote ratios: machines are shared.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSandbox, type Sandbox } from '../scripts/lib/sandbox';
import { runLatency, type LatencyResult } from '../scripts/lib/traffic';
import { timeChangesInFreshNode, withExtraEndpoint } from '../src/bench/changes';
import { toModel, toServicePort } from '../src/bench/model';
import { renderSyncPlot } from '../src/bench/plot';
import { waitForQuiet } from '../src/bench/quiet';
import { makeServices } from '../src/bench/shape';
import { type Percentiles, percentiles } from '../src/bench/stats';
import { latencyUnderKubeProxyNft, latencyUnderSvcplane, underKubeProxyIptables } from './lib/dataplane';
import { type ToolResult, kernelFloor, median, peerFull, svcplaneFull } from './lib/full';

const PEER_TIMEOUT_MS = 120_000;
const RESULTS = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../bench/results' : 'results');

interface Args {
  quick: boolean;
  only: Set<string>;
  out: string;
  /** Full-sync sizes to run instead of the default ones ("5000x50,10000x2"). */
  sizes?: Array<[number, number]>;
  /** Tools of the full-sync cases to run (default all); a partial run is for development, not for results/. */
  tools?: Set<string>;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, only: new Set(['full', 'incremental', 'dataplane']), out: path.join(RESULTS, 'nftables.json') };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--quick') a.quick = true;
    else if (argv[i] === '--only') a.only = new Set(argv[++i].split(','));
    else if (argv[i] === '--out') a.out = argv[++i];
    else if (argv[i] === '--sizes') a.sizes = argv[++i].split(',').map((x) => x.split('x').map(Number) as [number, number]);
    else if (argv[i] === '--tools') a.tools = new Set(argv[++i].split(','));
    else throw new Error(`unknown argument ${argv[i]} (use --quick, --only full,incremental,dataplane, --sizes 5000x50,..., --tools svcplane,kernelFloor,kubeProxyNft,iptablesLegacy,iptablesNft, --out FILE)`);
  }
  return a;
}

const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

interface FullCase {
  services: number;
  endpointsPerService: number;
  tools: Record<string, ToolResult>;
  /** peer seconds / svcplane seconds */
  ratios: Record<string, number | null>;
}

async function fullCase(n: number, e: number, only?: Set<string>): Promise<FullCase> {
  const services = makeServices(n, e, { withNodePorts: true });
  const tools: Record<string, ToolResult> = {};
  const runners: Array<[string, string, () => Promise<ToolResult>]> = [
    ['svcplane', 'svcplane', () => median(() => svcplaneFull(services))],
    ['kernelFloor', 'kernel floor', () => kernelFloor(services)],
    ['kubeProxyNft', 'kube-proxy nft -f', () => peerFull('nft -f', services, PEER_TIMEOUT_MS)],
    ['iptablesLegacy', 'iptables-legacy-restore', () => peerFull('iptables-legacy-restore', services, PEER_TIMEOUT_MS)],
    ['iptablesNft', 'iptables-nft-restore', () => peerFull('iptables-nft-restore', services, PEER_TIMEOUT_MS)],
  ];
  for (const [key, label, run] of runners) {
    if (only && !only.has(key)) continue;
    log(`full ${n}x${e}: ${label}`);
    tools[key] = await run();
  }
  const base = tools.svcplane?.seconds;
  const ratios: Record<string, number | null> = {};
  for (const [k, v] of Object.entries(tools)) if (k !== 'svcplane') ratios[k] = base && v.seconds ? v.seconds / base : null;
  log(`full ${n}x${e}: ${Object.entries(tools).map(([k, v]) => `${k}=${v.seconds === null ? (v.timedOut ? '>120s' : 'error') : v.seconds.toFixed(3) + 's'}`).join(' ')}`);
  return { services: n, endpointsPerService: e, tools, ratios };
}

// ---- incremental ----------------------------------------------------------------------------------------------

interface IncrementalCase {
  services: number;
  addEndpoint: Percentiles;
  removeEndpoint: Percentiles;
  addService: Percentiles;
  operationsPerChange: Record<string, number>;
}

async function incrementalCase(n: number, reps: number): Promise<IncrementalCase> {
  const services = makeServices(n, 2, { withNodePorts: true });
  const model = toModel(services);
  const { samples, operations } = await timeChangesInFreshNode('nftables', model, [
    { name: 'addEndpoint', make: withExtraEndpoint },
    { name: 'removeEndpoint', make: (sp) => sp },
    { name: 'addService', make: (_sp, i) => toServicePort({ namespace: 'bench-extra', name: `svc-${i}`, clusterIP: `198.19.0.${(i % 250) + 1}`, port: 80 + Math.floor(i / 250), protocol: 'TCP', endpoints: [{ ip: '198.18.126.1', port: 8080 }, { ip: '198.18.126.2', port: 8080 }] }) },
  ], reps, { before: waitForQuiet });
  return { services: n, addEndpoint: percentiles(samples.addEndpoint), removeEndpoint: percentiles(samples.removeEndpoint), addService: percentiles(samples.addService), operationsPerChange: operations };
}

// ---- data plane -----------------------------------------------------------------------------------------------

interface DataplaneCase {
  services: number;
  svcplane: LatencyResult | null;
  kubeProxyIptables: LatencyResult | null;
  kubeProxyNft: LatencyResult | null;
  notes: string[];
}

async function dataplaneCase(sb: Sandbox, n: number, connects: number): Promise<DataplaneCase> {
  const target = { clusterIP: '198.18.100.50', port: 80, endpoints: [{ ip: sb.backends[0].v4, port: 8080 }] };
  const services = makeServices(n, 2, { target });
  const notes: string[] = [];
  const measure = async () => (await waitForQuiet(), runLatency(sb, sb.clientNs, { addr: target.clusterIP, port: target.port, count: connects, warmup: 500, timeoutMs: 2000 }));

  log(`dataplane ${n}: svcplane`);
  const ours = await latencyUnderSvcplane(sb, services, {}, measure);

  log(`dataplane ${n}: kube-proxy iptables (legacy)`);
  const ipt = await underKubeProxyIptables(sb, services, PEER_TIMEOUT_MS, measure, notes);

  log(`dataplane ${n}: kube-proxy nftables`);
  const knft = await latencyUnderKubeProxyNft(sb, services, PEER_TIMEOUT_MS, measure, notes);
  log(`dataplane ${n}: p99 svcplane=${ours?.p99Us}us iptables=${ipt?.p99Us}us kube-proxy-nft=${knft?.p99Us}us`);
  return { services: n, svcplane: ours, kubeProxyIptables: ipt, kubeProxyNft: knft, notes };
}

// ---- main -----------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (network namespaces)');
  const args = parseArgs(process.argv.slice(2));
  const fullSizes: Array<[number, number]> = args.sizes ? args.sizes : args.quick ? [[1000, 2], [5000, 2]] : [[1000, 2], [10000, 2], [30000, 2], [5000, 50], [44000, 1]];
  const incrSizes = args.quick ? [1000, 5000] : [1000, 10000, 30000];
  const dpSizes = args.quick ? [1, 1000] : [1, 1000, 10000, 30000];
  const reps = args.quick ? 20 : 100;
  const connects = args.quick ? 500 : 3000;

  const result = {
    date: new Date().toISOString(),
    machine: { kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    note: 'Times in seconds (full), milliseconds (incremental), microseconds (data plane). Shared, noisy machine: compare ratios within this run.',
    full: [] as FullCase[],
    incremental: [] as IncrementalCase[],
    dataplane: [] as DataplaneCase[],
    targets: {} as Record<string, unknown>,
  };

  if (args.only.has('full')) for (const [n, e] of fullSizes) result.full.push(await fullCase(n, e, args.tools));
  if (args.only.has('incremental')) for (const n of incrSizes) {
    log(`incremental ${n}`);
    result.incremental.push(await incrementalCase(n, reps));
  }
  if (args.only.has('dataplane')) {
    const sb = await createSandbox({ backends: 1, ports: [8080] });
    try {
      for (const n of dpSizes) result.dataplane.push(await dataplaneCase(sb, n, connects));
    } finally {
      await sb.destroy();
    }
  }

  // The issue's targets, evaluated on this run. A peer stopped at the time limit gives a lower bound: "> limit / svcplane".
  const lowerBound = (c: FullCase | undefined, tool: string): number | string | null => {
    const base = c?.tools.svcplane?.seconds;
    if (c?.tools[tool]?.timedOut && base) return `> ${(PEER_TIMEOUT_MS / 1000 / base).toFixed(0)} (stopped at ${PEER_TIMEOUT_MS / 1000} s)`;
    return c?.ratios[tool] ?? null;
  };
  const full = (n: number, e: number) => result.full.find((c) => c.services === n && c.endpointsPerService === e);
  const inc = (n: number) => result.incremental.find((c) => c.services === n);
  const worstP99 = (c?: IncrementalCase) => (c ? Math.max(c.addEndpoint.p99Ms, c.removeEndpoint.p99Ms, c.addService.p99Ms) : null);
  const dp1 = result.dataplane.find((d) => d.services === 1)?.svcplane?.p99Us;
  const dp30k = result.dataplane.find((d) => d.services === 30000)?.svcplane?.p99Us;
  result.targets = {
    'full 10k x 2: kube-proxy nft -f / svcplane (target >= 50)': lowerBound(full(10000, 2), 'kubeProxyNft'),
    'full 10k x 2: iptables-legacy-restore / svcplane (target > 1)': full(10000, 2)?.ratios.iptablesLegacy ?? null,
    'full 5k x 50 seconds (target < 2)': full(5000, 50)?.tools.svcplane?.seconds ?? null,
    'full 44k x 1 seconds (target < 2)': full(44000, 1)?.tools.svcplane?.seconds ?? null,
    'incremental p99 ms at 30k (target < 5)': worstP99(inc(30000)),
    'incremental p99 30k / 1k (target <= 1.5)': worstP99(inc(30000)) && worstP99(inc(1000)) ? worstP99(inc(30000))! / worstP99(inc(1000))! : null,
    'data plane p99 30k / 1 Service (target <= 1.10)': dp1 && dp30k ? dp30k / dp1 : null,
  };

  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  fs.writeFileSync(args.out, JSON.stringify(result, null, 2) + '\n');
  const svg = renderSyncPlot(result.full.filter((c) => c.endpointsPerService === 2));
  fs.writeFileSync(args.out.replace(/\.json$/, '-sync.svg'), svg);
  log(`wrote ${args.out}`);
  console.log(JSON.stringify(result.targets, null, 2));
}

main().catch((e: unknown) => {
  console.error(`bench failed: ${e instanceof Error ? e.stack : String(e)}`);
  process.exit(1);
});
