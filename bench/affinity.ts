// `npm run bench:affinity`: what sessionAffinity ClientIP costs in svcplane's nftables dataplane, against
// kube-proxy's nftables mode doing the same, in one run on this machine ("choose a shape that stays cheap
// at 10k Services; measure it").
//   full sync      1k and 10k Services x 2 endpoints, every one with ClientIP affinity (timeoutSeconds 10800, the
//                  default) and without: svcplane (median of 3, each in a fresh netns) and `nft -f` of the
//                  ruleset kube-proxy generates (one dynamic set per endpoint, per-endpoint check rules).
//   incremental    one endpoint added / removed in an affinity Service, p50 / p99, at 1k and 10k.
//   data plane     new-connection latency (connect -> accept) to an affinity Service with 1 and 10k affinity
//                  Services programmed, one client address (so every connection after the first is a remembered
//                  client: the steady state), svcplane and kube-proxy nft.
// svcplane's shape: one remembered-clients set per table (client . service address . proto . port -> slot),
// rules per distinct timeout, not per Service; a Service with affinity adds elements, not sets or rules
// (src/dataplane/nftables/rules/picks.ts). Results: bench/results/affinity.json. Quote ratios: machines are shared.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSandbox, type Sandbox } from '../scripts/lib/sandbox';
import { runLatency, type LatencyResult } from '../scripts/lib/traffic';
import { timeChangesInFreshNode, withExtraEndpoint } from '../src/bench/changes';
import { toModel } from '../src/bench/model';
import { waitForQuiet } from '../src/bench/quiet';
import { makeServices, type BenchService } from '../src/bench/shape';
import { type Percentiles, percentiles } from '../src/bench/stats';
import { fullSyncInFreshNode } from '../src/bench/sync';
import { latencyUnderKubeProxyNft, latencyUnderSvcplane } from './lib/dataplane';
import { peerFull } from './lib/full';

const PEER_TIMEOUT_MS = 120_000;
const AFFINITY_SECONDS = 10800;
const SAMPLES = 3;
const RESULTS = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../bench/results' : 'results');
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

const sticky = (l: BenchService[]): BenchService[] => l.map((s) => ({ ...s, affinitySeconds: AFFINITY_SECONDS }));

interface Timed {
  seconds: number | null;
  timedOut?: boolean;
  error?: string;
  samples?: number[];
  /** svcplane: kernel operations and bytes of the one transaction. */
  operations?: number;
  bytes?: number;
}

async function svcplaneFull(services: BenchService[]): Promise<Timed> {
  const model = toModel(services);
  const runs: Timed[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const r = await fullSyncInFreshNode('nftables', model, { before: waitForQuiet });
    runs.push({ seconds: r.seconds, operations: r.result.operations, bytes: r.result.bytes });
  }
  runs.sort((a, b) => a.seconds! - b.seconds!);
  return { ...runs[1], samples: runs.map((r) => r.seconds!) };
}

async function kubeProxyFull(services: BenchService[]): Promise<Timed> {
  const r = await peerFull('nft -f', services, PEER_TIMEOUT_MS);
  return { seconds: r.seconds, ...(r.timedOut ? { timedOut: true } : {}), ...(r.error ? { error: r.error } : {}) };
}

interface FullCase {
  services: number;
  svcplane: { none: Timed; affinity: Timed };
  kubeProxyNft: { none: Timed; affinity: Timed };
  ratios: {
    /** A peer that timed out makes its ratios lower bounds (ratio() above); these say which. */
    kubeProxyTimedOut: { none: boolean; affinity: boolean };
    /** what turning affinity on costs each tool: affinity seconds / none seconds */
    svcplaneAffinityCost: number | null;
    kubeProxyAffinityCost: number | null;
    /** kube-proxy nft -f seconds / svcplane seconds, both with affinity */
    kubeProxyOverSvcplane: number | null;
  };
}

/** a / b; a peer stopped at the time limit gives the lower bound limit / b (the report prints it as "> x"). */
const ratio = (a: Timed, b: Timed) => (b.seconds ? (a.seconds ? a.seconds / b.seconds : a.timedOut ? PEER_TIMEOUT_MS / 1000 / b.seconds : null) : null);

async function fullCase(n: number): Promise<FullCase> {
  const plain = makeServices(n, 2, { withNodePorts: true });
  const withAffinity = sticky(plain);
  log(`full ${n}x2: svcplane`);
  const sNone = await svcplaneFull(plain);
  const sAff = await svcplaneFull(withAffinity);
  log(`full ${n}x2: kube-proxy nft -f`);
  const kNone = await kubeProxyFull(plain);
  const kAff = await kubeProxyFull(withAffinity);
  const show = (t: Timed) => (t.seconds === null ? (t.timedOut ? '>120s' : 'error') : `${t.seconds.toFixed(3)}s`);
  log(`full ${n}x2: svcplane ${show(sNone)} / affinity ${show(sAff)}; kube-proxy ${show(kNone)} / affinity ${show(kAff)}`);
  return {
    services: n,
    svcplane: { none: sNone, affinity: sAff },
    kubeProxyNft: { none: kNone, affinity: kAff },
    ratios: { kubeProxyTimedOut: { none: !!kNone.timedOut, affinity: !!kAff.timedOut }, svcplaneAffinityCost: ratio(sAff, sNone), kubeProxyAffinityCost: ratio(kAff, kNone), kubeProxyOverSvcplane: ratio(kAff, sAff) },
  };
}

interface IncrementalCase {
  services: number;
  addEndpoint: Percentiles;
  removeEndpoint: Percentiles;
  operationsPerChange: Record<string, number>;
}

async function incrementalCase(n: number, reps: number): Promise<IncrementalCase> {
  const model = toModel(sticky(makeServices(n, 2, { withNodePorts: true })));
  const { samples, operations } = await timeChangesInFreshNode('nftables', model, [{ name: 'addEndpoint', make: withExtraEndpoint }, { name: 'removeEndpoint', make: (sp) => sp }], reps, { before: waitForQuiet });
  return { services: n, addEndpoint: percentiles(samples.addEndpoint), removeEndpoint: percentiles(samples.removeEndpoint), operationsPerChange: operations };
}

interface DataplaneCase {
  services: number;
  svcplane: LatencyResult | null;
  kubeProxyNft: LatencyResult | null;
  notes: string[];
}

async function dataplaneCase(sb: Sandbox, n: number, connects: number): Promise<DataplaneCase> {
  const target = { clusterIP: '198.18.100.50', port: 80, endpoints: sb.backends.map((b) => ({ ip: b.v4, port: 8080 })) };
  const services = sticky(makeServices(n, 2, { target }));
  const notes: string[] = [];
  const measure = async () => (await waitForQuiet(), runLatency(sb, sb.clientNs, { addr: target.clusterIP, port: target.port, count: connects, warmup: 500, timeoutMs: 2000 }));

  log(`dataplane ${n}: svcplane`);
  const ours = await latencyUnderSvcplane(sb, services, {}, measure);
  log(`dataplane ${n}: kube-proxy nftables`);
  const knft = await latencyUnderKubeProxyNft(sb, services, PEER_TIMEOUT_MS, measure, notes);
  log(`dataplane ${n}: p50/p99 svcplane=${ours?.p50Us}/${ours?.p99Us}us kube-proxy-nft=${knft?.p50Us}/${knft?.p99Us}us`);
  return { services: n, svcplane: ours, kubeProxyNft: knft, notes };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (network namespaces)');
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const outAt = argv.indexOf('--out');
  const out = outAt >= 0 ? argv[outAt + 1] : path.join(RESULTS, 'affinity.json');
  const sizes = quick ? [1000] : [1000, 10000];
  const reps = quick ? 20 : 100;
  const connects = quick ? 500 : 3000;

  const result = {
    date: new Date().toISOString(),
    machine: { kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    note: `Every Service has sessionAffinity ClientIP, timeoutSeconds ${AFFINITY_SECONDS}, unless "none". Times: seconds (full), ms (incremental), µs (data plane). Compare ratios within this run.`,
    full: [] as FullCase[],
    incremental: [] as IncrementalCase[],
    dataplane: [] as DataplaneCase[],
    summary: {} as Record<string, number | null>,
  };
  for (const n of sizes) result.full.push(await fullCase(n));
  for (const n of sizes) {
    log(`incremental ${n}`);
    result.incremental.push(await incrementalCase(n, reps));
  }
  const sb = await createSandbox({ backends: 2, ports: [8080] });
  try {
    for (const n of [1, ...sizes.slice(-1)]) result.dataplane.push(await dataplaneCase(sb, n, connects));
  } finally {
    await sb.destroy();
  }

  const big = sizes[sizes.length - 1];
  const f = result.full.find((c) => c.services === big);
  const inc = (n: number) => result.incremental.find((c) => c.services === n);
  const worst = (c?: IncrementalCase) => (c ? Math.max(c.addEndpoint.p99Ms, c.removeEndpoint.p99Ms) : null);
  const median = (c?: IncrementalCase) => (c ? Math.max(c.addEndpoint.p50Ms, c.removeEndpoint.p50Ms) : null);
  const bound = f?.ratios.kubeProxyTimedOut.affinity ? ' (lower bound: kube-proxy stopped at 120 s)' : '';
  const dp = (n: number) => result.dataplane.find((d) => d.services === n);
  const div = (a: number | null | undefined, b: number | null | undefined) => (a && b ? a / b : null);
  result.summary = {
    [`full ${big} x 2: svcplane with affinity / without`]: f?.ratios.svcplaneAffinityCost ?? null,
    [`full ${big} x 2: kube-proxy nft -f with affinity / without${bound}`]: f?.ratios.kubeProxyAffinityCost ?? null,
    [`full ${big} x 2 with affinity: kube-proxy nft -f / svcplane${bound}`]: f?.ratios.kubeProxyOverSvcplane ?? null,
    [`incremental p50 ${big} / ${sizes[0]}, affinity`]: div(median(inc(big)), median(inc(sizes[0]))),
    [`incremental p99 ms at ${big}, affinity`]: worst(inc(big)),
    [`incremental p99 ${big} / ${sizes[0]}, affinity`]: div(worst(inc(big)), worst(inc(sizes[0]))),
    [`data plane p99 ${big} / 1 affinity Service, svcplane`]: div(dp(big)?.svcplane?.p99Us, dp(1)?.svcplane?.p99Us),
    [`data plane p99 ${big} / 1 affinity Service, kube-proxy nft`]: div(dp(big)?.kubeProxyNft?.p99Us, dp(1)?.kubeProxyNft?.p99Us),
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${out}`);
  console.log(JSON.stringify(result.summary, null, 2));
}

main().catch((e: unknown) => {
  console.error(`bench failed: ${e instanceof Error ? e.stack : String(e)}`);
  process.exit(1);
});
