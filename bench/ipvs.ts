// `npm run bench:ipvs`: svcplane's IPVS dataplane against its peers, in one run, on a real kernel with IPVS (the
// Debian kernel in the qemu guest of scripts/lib/vm.ts: this machine's kernel has none).
//   full sync    N Services x 2 endpoints (ClusterIP, TCP), each case in a fresh network namespace of the guest:
//                svcplane (virtual services, real servers, Service addresses on svcplane0 and its nftables table)
//                against `ip -batch` of the same addresses on a dummy link plus `ipvsadm --restore` of the same
//                virtual services and real servers (what kube-proxy's IPVS mode amounts to, without its ipsets).
//   incremental  one endpoint added to / removed from one Service, p50 and p99, at each size.
// The guest runs under TCG (emulated CPU, ~10-20x slower than native): absolute times mean nothing, ratios in the
// same run do. Results: bench/results/ipvs.json. On the host this boots the guest and runs itself there
// (--in-guest), reading the result back from the console.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { prepareGuest, runInGuest } from '../scripts/lib/vm';
import { timeChangesInFreshNode, withExtraEndpoint } from '../src/bench/changes';
import { toModel } from '../src/bench/model';
import { inFreshNetns } from '../src/bench/node';
import { execInNetns, runPeerInNetns } from '../src/bench/peers/exec';
import { loadPeer } from '../src/bench/peers/load';
import { waitForQuiet } from '../src/bench/quiet';
import { POD_CIDR, makeServices, type BenchService } from '../src/bench/shape';
import { type Percentiles, percentiles } from '../src/bench/stats';
import { fullSyncInFreshNode } from '../src/bench/sync';

const RESULTS = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../bench/results' : 'results');
const MARK = '@@SVCPLANE-BENCH-RESULT@@';
const PEER_TIMEOUT_MS = 600_000;
const SAMPLES = 5;
const WARMUP = 4;
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

interface Sample {
  seconds: number;
  /** svcplane: time in the kernel exchanges (IPVS, rtnetlink, nftables) as the addon measured it */
  kernelSeconds?: number;
  operations?: number;
  phases?: Record<string, number>;
}

interface FullCase {
  services: number;
  endpointsPerService: number;
  /**
   * Median of SAMPLES, after WARMUP syncs: an agent's syncs run warm (its JIT has compiled the sync path; under TCG
   * V8 keeps tiering up for a few syncs: 1k samples in order were 0.84, 0.44, 0.40, 0.34, 0.27 s after a single
   * warm-up). The warm-up syncs' times are kept, the first as coldSeconds: what a process's very first sync costs.
   */
  svcplane: Sample & { /** in the order they ran */ samples: number[]; coldSeconds: number; warmupSeconds: number[] };
  peer: { ipBatchSeconds: number; ipvsadmRestoreSeconds: number; seconds: number };
  /** peer seconds / svcplane seconds */
  ratio: number;
  /**
   * For telling design from implementation apart: svcplane binding addresses as kube-proxy does (--ipvs-bind-mode
   * address, median of 3 warm samples), and the peer binding local routes as svcplane does (ip -batch of routes).
   */
  variants: { svcplaneAddressMode: number; peerWithRoutes: number };
}

interface IncrementalCase {
  services: number;
  addEndpoint: Percentiles;
  removeEndpoint: Percentiles;
  operationsPerChange: number;
}

/** The pod network every real server lives in must be routable in the namespace, or IPVS refuses real servers. */
async function podNetwork(netns: string): Promise<void> {
  await execInNetns(netns, ['ip', 'link', 'add', 'pods', 'type', 'dummy']);
  await execInNetns(netns, ['ip', 'addr', 'add', POD_CIDR.replace('.0/', '.1/'), 'dev', 'pods']);
  await execInNetns(netns, ['ip', 'link', 'set', 'pods', 'up']);
}

async function svcplaneFull(services: BenchService[], bindMode: 'route' | 'address' = 'route'): Promise<Sample> {
  // Each sample's namespace is new; the previous one's is freed by a kworker and its proxier is garbage, so wait.
  const r = await fullSyncInFreshNode('ipvs', toModel(services), { overrides: { bindMode }, setup: podNetwork, before: waitForQuiet });
  return { seconds: r.seconds, kernelSeconds: r.result.kernelMicros / 1e6, operations: r.result.operations, phases: r.result.phases };
}

/** `ip -batch` of the Service addresses, then `ipvsadm --restore`: the same virtual services, real servers, bindings. */
async function peerFull(services: BenchService[], routes = false): Promise<FullCase['peer']> {
  const addrs = services.map((s) => (routes ? `route add local ${s.clusterIP}/32 dev kube-ipvs0 table local` : `address add ${s.clusterIP}/32 dev kube-ipvs0`)).join('\n') + '\n';
  return inFreshNetns(async (ns) => {
    await podNetwork(ns);
    await execInNetns(ns, ['ip', 'link', 'add', 'kube-ipvs0', 'type', 'dummy']);
    await waitForQuiet();
    const ip = await runPeerInNetns(ns, ['ip', '-batch', '-'], addrs, PEER_TIMEOUT_MS);
    if (ip.seconds === null) throw new Error(`ip -batch: ${ip.error}`);
    const ipvsadm = await loadPeer('ipvsadm --restore', services, { netns: ns, timeoutMs: PEER_TIMEOUT_MS });
    if (ipvsadm.seconds === null) throw new Error(`ipvsadm --restore: ${ipvsadm.error}`);
    // Clean up here: a namespace holding thousands of virtual services is freed slowly in the background.
    await execInNetns(ns, ['ipvsadm', '-C']);
    return { ipBatchSeconds: ip.seconds, ipvsadmRestoreSeconds: ipvsadm.seconds, seconds: ip.seconds + ipvsadm.seconds };
  });
}

async function fullCase(n: number, e: number): Promise<FullCase> {
  const services = makeServices(n, e);
  log(`full ${n}x${e}: svcplane`);
  const warmup: number[] = [];
  for (let i = 0; i < WARMUP; i++) warmup.push((await svcplaneFull(services)).seconds);
  const samples: Sample[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const x = await svcplaneFull(services);
    log(`  sample ${x.seconds.toFixed(3)} s ${JSON.stringify(x.phases)}`);
    samples.push(x);
  }
  const inOrder = samples.map((x) => x.seconds);
  samples.sort((a, b) => a.seconds - b.seconds);
  const med = samples[Math.floor(samples.length / 2)];
  log(`full ${n}x${e}: ip -batch + ipvsadm --restore`);
  const peer = await peerFull(services);
  log(`full ${n}x${e}: svcplane ${med.seconds.toFixed(2)} s, peer ${peer.seconds.toFixed(2)} s`);
  log(`full ${n}x${e}: variants (svcplane binding addresses, peer binding routes)`);
  const addr: number[] = [];
  for (let i = 0; i < 3; i++) addr.push((await svcplaneFull(services, 'address')).seconds);
  addr.sort((a, b) => a - b);
  const variants = { svcplaneAddressMode: addr[1], peerWithRoutes: (await peerFull(services, true)).seconds };
  return { services: n, endpointsPerService: e, svcplane: { ...med, samples: inOrder, coldSeconds: warmup[0], warmupSeconds: warmup }, peer, ratio: peer.seconds / med.seconds, variants };
}

async function incrementalCase(n: number, reps: number): Promise<IncrementalCase> {
  log(`incremental ${n}`);
  // Each round adds an endpoint to one Service, then puts it back as it was: a TCP real server drains first
  // (weight 0), so removing means deleting a drained one.
  const { samples, operations } = await timeChangesInFreshNode('ipvs', toModel(makeServices(n, 2)), [{ name: 'addEndpoint', make: withExtraEndpoint }, { name: 'removeEndpoint', make: (sp) => sp }], reps, { warmup: 5, setup: podNetwork, before: waitForQuiet });
  return { services: n, addEndpoint: percentiles(samples.addEndpoint), removeEndpoint: percentiles(samples.removeEndpoint), operationsPerChange: operations.removeEndpoint };
}

async function inGuest(quick: boolean): Promise<void> {
  const sizes = quick ? [1000] : [1000, 10000];
  const result = {
    date: new Date().toISOString(),
    machine: { guestKernel: os.release(), cpus: os.cpus().length, node: process.version, emulation: 'qemu TCG (no KVM)' },
    note: 'In the qemu guest under TCG: compare ratios within this run, not absolute times. Peer: ip -batch (addresses) + ipvsadm --restore, same Services.',
    full: [] as FullCase[],
    incremental: [] as IncrementalCase[],
    targets: {} as Record<string, number | null>,
  };
  for (const n of sizes) result.full.push(await fullCase(n, 2));
  for (const n of sizes) result.incremental.push(await incrementalCase(n, quick ? 20 : 50));
  const inc = (n: number) => result.incremental.find((c) => c.services === n);
  const worst = (c?: IncrementalCase) => (c ? Math.max(c.addEndpoint.p50Ms, c.removeEndpoint.p50Ms) : null);
  const full = (n: number) => result.full.find((c) => c.services === n);
  result.targets = {
    'full 1k x 2: peer / svcplane (target >= 3)': full(1000)?.ratio ?? null,
    'full 10k x 2: peer / svcplane (target >= 3)': full(10000)?.ratio ?? null,
    'incremental p50 10k / 1k (target < 1.5)': worst(inc(10000)) && worst(inc(1000)) ? worst(inc(10000))! / worst(inc(1000))! : null,
  };
  process.stdout.write(`${MARK}${JSON.stringify(result)}${MARK}\n`);
}

async function onHost(args: string[]): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (the guest harness)');
  const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : path.join(RESULTS, 'ipvs.json');
  const image = prepareGuest();
  log(`booting ${image.package} (${image.version}) under qemu/TCG`);
  const r = await runInGuest(`node dist/bench/ipvs.js --in-guest${args.includes('--quick') ? ' --quick' : ''}`, {
    image, timeoutMs: 60 * 60_000, memoryMiB: 3072, onOutput: (c) => process.stderr.write(c.replace(new RegExp(`${MARK}.*${MARK}`, 's'), '')),
  });
  const m = new RegExp(`${MARK}(.*)${MARK}`, 's').exec(r.output);
  if (r.code !== 0 || !m) throw new Error(`the guest run failed (exit ${r.code})`);
  const result = JSON.parse(m[1]) as { targets: unknown };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${out}`);
  console.log(JSON.stringify(result.targets, null, 2));
}

const argv = process.argv.slice(2);
(argv.includes('--in-guest') ? inGuest(argv.includes('--quick')) : onHost(argv)).catch((e: unknown) => {
  console.error(`bench failed: ${e instanceof Error ? e.stack : String(e)}`);
  process.exit(1);
});
