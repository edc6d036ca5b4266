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
import { NetlinkNftClient } from '../src/dataplane/nftables/client';
import { IpvsClient } from '../src/dataplane/ipvs/client';
import { IpvsProxier } from '../src/dataplane/ipvs/proxier';
import { defaultIpvsConfig } from '../src/dataplane/ipvs/config';
import type { ServicePort } from '../src/model/types';
import { prepareGuest, runInGuest } from '../scripts/lib/vm';
import { BENCH_NODE, toModel } from '../src/bench/model';
import { waitForQuiet } from './lib/quiet';
import { execInNetns, runPeer, withFreshNetns } from './peers/run';
import { POD_CIDR, makeServices, type BenchService } from '../src/bench/shape';

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

interface Percentiles {
  p50Ms: number;
  p99Ms: number;
  n: number;
}

interface IncrementalCase {
  services: number;
  addEndpoint: Percentiles;
  removeEndpoint: Percentiles;
  operationsPerChange: number;
}

function percentiles(us: number[]): Percentiles {
  const s = [...us].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] / 1000;
  return { p50Ms: at(0.5), p99Ms: at(0.99), n: s.length };
}

/** The pod network every real server lives in must be routable in the namespace, or IPVS refuses real servers. */
async function podNetwork(ns: string): Promise<void> {
  await execInNetns(ns, ['ip', 'link', 'add', 'pods', 'type', 'dummy']);
  await execInNetns(ns, ['ip', 'addr', 'add', POD_CIDR.replace('.0/', '.1/'), 'dev', 'pods']);
  await execInNetns(ns, ['ip', 'link', 'set', 'pods', 'up']);
}

function proxier(ns: string, bindMode: 'route' | 'address' = 'route'): IpvsProxier {
  const netns = { netns: `/run/netns/${ns}` };
  return new IpvsProxier(new IpvsClient(netns), new NetlinkNftClient(netns), defaultIpvsConfig({ clusterCIDRs: [POD_CIDR], nodeName: BENCH_NODE, bindMode }));
}

async function svcplaneFull(services: BenchService[], bindMode: 'route' | 'address' = 'route'): Promise<Sample> {
  const model = toModel(services);
  return withFreshNetns(async (ns) => {
    await podNetwork(ns);
    const p = proxier(ns, bindMode);
    try {
      // The previous sample's namespace is freed by a kworker, and its proxier is garbage: neither is this one's.
      await waitForQuiet();
      const t0 = process.hrtime.bigint();
      const r = await p.syncFull(model);
      return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, kernelSeconds: r.kernelMicros / 1e6, operations: r.operations, phases: r.phases };
    } finally {
      p.close();
    }
  });
}

/** `ip -batch` of the Service addresses, then `ipvsadm --restore`: the same virtual services, real servers, bindings. */
async function peerFull(services: BenchService[], routes = false): Promise<FullCase['peer']> {
  const addrs = services.map((s) => (routes ? `route add local ${s.clusterIP}/32 dev kube-ipvs0 table local` : `address add ${s.clusterIP}/32 dev kube-ipvs0`)).join('\n') + '\n';
  const rules: string[] = [];
  for (const s of services) {
    const vs = `-t ${s.clusterIP}:${s.port}`;
    rules.push(`-A ${vs} -s rr`);
    for (const e of s.endpoints) rules.push(`-a ${vs} -r ${e.ip}:${e.port} -m -w 1`);
  }
  return withFreshNetns(async (ns) => {
    await podNetwork(ns);
    await execInNetns(ns, ['ip', 'link', 'add', 'kube-ipvs0', 'type', 'dummy']);
    await waitForQuiet();
    const ip = await runPeer(['ip', '-batch', '-'], addrs, { netns: ns, timeoutMs: PEER_TIMEOUT_MS, input: 'file' });
    if (ip.code !== 0 || ip.seconds === null) throw new Error(`ip -batch: ${ip.stderr.slice(-300)}`);
    const ipvsadm = await runPeer(['ipvsadm', '--restore'], rules.join('\n') + '\n', { netns: ns, timeoutMs: PEER_TIMEOUT_MS, input: 'stdin' });
    if (ipvsadm.code !== 0 || ipvsadm.seconds === null) throw new Error(`ipvsadm --restore: ${ipvsadm.stderr.slice(-300)}`);
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
  const model = toModel(makeServices(n, 2));
  const keys = [...model.keys()];
  log(`incremental ${n}`);
  return withFreshNetns(async (ns) => {
    await podNetwork(ns);
    const p = proxier(ns);
    try {
      await p.syncFull(model);
      await waitForQuiet();
      const add: number[] = [];
      const remove: number[] = [];
      let ops = 0;
      const time = async (sp: ServicePort) => {
        const t0 = process.hrtime.bigint();
        const r = await p.syncPartial(new Map([[sp.key, sp]]));
        if (r.full) throw new Error('expected a partial sync');
        ops = r.operations;
        return Number(process.hrtime.bigint() - t0) / 1000;
      };
      const warmup = 5;
      for (let i = 0; i < reps + warmup; i++) {
        const sp = model.get(keys[(i * 7919) % keys.length])!;
        const more = [...sp.endpoints, { ...sp.endpoints[0], address: `198.18.126.${(i % 250) + 1}` }];
        const grown: ServicePort = { ...sp, endpoints: more, allEndpoints: more };
        const a = await time(grown);
        // Back to as it was: a TCP real server drains first (weight 0), so removing means deleting a drained one.
        const r = await time(sp);
        if (i >= warmup) {
          add.push(a);
          remove.push(r);
        }
      }
      return { services: n, addEndpoint: percentiles(add), removeEndpoint: percentiles(remove), operationsPerChange: ops };
    } finally {
      p.close();
    }
  });
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
