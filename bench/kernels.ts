// `npm run bench:kernels`: the nftables mode on every kernel of the matrix, and what each ruleset shape costs.
// This machine's kernel runs natively; Debian's 6.1 and 6.12 run in the qemu guest (scripts/lib/vm.ts, TCG: an
// emulated CPU, so absolute times mean nothing there and only ratios within one kernel's run are quoted).
// Per kernel, each case in a fresh network namespace:
//   full sync     N Services x 2 endpoints: svcplane in the shape the kernel allows (probed) and in the fallback
//                 shape (map membership loading the value, as on kernels before 6.5), samples alternated; kube-proxy's
//                 `nft -f` and iptables-legacy-restore of the same Services.
//   incremental   one endpoint added / removed, p50 and p99, in the shape the kernel allows.
//   data plane    new-connection latency through the DNAT with N Services programmed, in both shapes, rounds
//                 alternated.
// Results: bench/results/kernels.json. On the host this runs the host's case, then boots each guest kernel and
// runs itself there (--in-guest), reading the result back from the console.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NetlinkNftClient } from '../src/dataplane/nftables/client';
import { type KernelSupport, probeKernel } from '../src/dataplane/nftables/kernel';
import { createSandbox } from '../scripts/lib/sandbox';
import { runLatency, type LatencyResult } from '../scripts/lib/traffic';
import { KNOWN_KERNELS, kernelPackage, prepareGuest, runInGuest } from '../scripts/lib/vm';
import { timeChangesInFreshNode, withExtraEndpoint } from '../src/bench/changes';
import { toModel } from '../src/bench/model';
import { inFreshNetns } from '../src/bench/node';
import { waitForQuiet } from '../src/bench/quiet';
import { makeServices } from '../src/bench/shape';
import { type Percentiles, percentiles } from '../src/bench/stats';
import { latencyUnderSvcplane } from './lib/dataplane';
import { type ToolResult, peerFull, svcplaneFull } from './lib/full';

const RESULTS = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../bench/results' : 'results');
const MARK = '@@SVCPLANE-BENCH-RESULT@@';
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

/** The fallback shape pinned: what kernels before 6.5 get (the other constructs are in every kernel here). */
const FALLBACK: KernelSupport = { release: 'pinned', missing: ['map-membership'] };

interface KernelRun {
  kernel: string;
  emulation: 'native' | 'qemu TCG';
  /** What the probe found missing on this kernel: the shape svcplane uses here. */
  missing: string[];
  full: Array<{ services: number; tools: Record<string, ToolResult>; ratios: Record<string, number | null> }>;
  incremental: Array<{ services: number; addEndpoint: Percentiles; removeEndpoint: Percentiles }>;
  /** chosen / fallback: the round with the median p50 of each shape; rounds: every round, in order. */
  dataplane: Array<{ services: number; chosen: LatencyResult | null; fallback: LatencyResult | null; rounds?: Array<{ chosen: LatencyResult; fallback: LatencyResult }> }>;
  ratios: Record<string, number | null>;
}

async function probe(): Promise<KernelSupport> {
  return inFreshNetns(async (netns) => {
    const client = new NetlinkNftClient({ netns });
    try {
      return await probeKernel(client);
    } finally {
      client.close();
    }
  });
}

/** Samples of each shape per size: alternated after one unrecorded warm-up sync of each (see interleaved). */
const SHAPE_SAMPLES = 3;

/**
 * Times several tools `samples` times each, alternating them (a, b, a, b, ...) after one unrecorded run of each:
 * run back to back, the second tool measured faster only for coming second (the first sync of a size warms the
 * JIT and the allocator: on 6.1, where both are the same shape, one run had them 0.52x apart). Median of each.
 */
async function interleaved(tools: Record<string, () => Promise<ToolResult>>, samples: number): Promise<Record<string, ToolResult>> {
  const names = Object.keys(tools);
  for (const name of names) await tools[name]();
  const got: Record<string, ToolResult[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < samples; i++) for (const name of names) got[name].push(await tools[name]());
  const out: Record<string, ToolResult> = {};
  for (const name of names) {
    const ok = got[name].filter((r) => r.seconds !== null).sort((a, b) => a.seconds! - b.seconds!);
    out[name] = ok.length ? { ...ok[Math.floor(ok.length / 2)], samples: got[name].map((r) => r.seconds ?? NaN) } : got[name][0];
  }
  return out;
}

/** The round whose p50 is the median of the rounds' (its p99 with it: one real run, not a mix). */
function medianLatency(rounds: LatencyResult[]): LatencyResult {
  const sorted = [...rounds].sort((a, b) => (a.p50Us ?? Infinity) - (b.p50Us ?? Infinity));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

async function runHere(opts: { sizes: number[]; peerTimeoutMs: number; reps: number; connects: number; latencyRounds: number; emulation: KernelRun['emulation'] }): Promise<KernelRun> {
  const support = await probe();
  const run: KernelRun = { kernel: os.release(), emulation: opts.emulation, missing: support.missing, full: [], incremental: [], dataplane: [], ratios: {} };
  log(`kernel ${run.kernel}: probe found missing [${support.missing.join(', ')}]`);
  for (const n of opts.sizes) {
    const services = makeServices(n, 2, { withNodePorts: true });
    const tools: Record<string, ToolResult> = {};
    log(`full ${n}: svcplane, shape this kernel allows and fallback shape, interleaved`);
    const both = await interleaved({ svcplane: () => svcplaneFull(services), svcplaneFallback: () => svcplaneFull(services, { kernel: FALLBACK }) }, SHAPE_SAMPLES);
    Object.assign(tools, both);
    log(`full ${n}: kube-proxy nft -f`);
    tools.kubeProxyNft = await peerFull('nft -f', services, opts.peerTimeoutMs);
    log(`full ${n}: iptables-legacy-restore`);
    tools.iptablesLegacy = await peerFull('iptables-legacy-restore', services, opts.peerTimeoutMs);
    const base = tools.svcplane.seconds;
    const ratios: Record<string, number | null> = {};
    for (const [k, v] of Object.entries(tools)) if (k !== 'svcplane') ratios[k] = base && v.seconds ? v.seconds / base : null;
    log(`full ${n}: ${Object.entries(tools).map(([k, v]) => `${k}=${v.seconds === null ? (v.timedOut ? 'timed out' : 'error') : v.seconds.toFixed(3) + 's'}`).join(' ')}`);
    run.full.push({ services: n, tools, ratios });
  }
  for (const n of opts.sizes) {
    log(`incremental ${n}`);
    const model = toModel(makeServices(n, 2, { withNodePorts: true }));
    const { samples } = await timeChangesInFreshNode('nftables', model, [{ name: 'addEndpoint', make: withExtraEndpoint }, { name: 'removeEndpoint', make: (sp) => sp }], opts.reps, { before: waitForQuiet });
    run.incremental.push({ services: n, addEndpoint: percentiles(samples.addEndpoint), removeEndpoint: percentiles(samples.removeEndpoint) });
  }
  const sb = await createSandbox({ backends: 1, ports: [8080] });
  try {
    for (const n of [1, opts.sizes[opts.sizes.length - 1]]) {
      const target = { clusterIP: '198.18.100.50', port: 80, endpoints: [{ ip: sb.backends[0].v4, port: 8080 }] };
      const services = makeServices(n, 2, { target });
      const measure = async () => (await waitForQuiet(), runLatency(sb, sb.clientNs, { addr: target.clusterIP, port: target.port, count: opts.connects, warmup: Math.min(500, opts.connects / 2), timeoutMs: 5000 }));
      // Rounds alternate the shapes, so neither gains from running second (a warmer JIT, a quieter machine).
      const rounds: Array<{ chosen: LatencyResult; fallback: LatencyResult }> = [];
      for (let i = 0; i < opts.latencyRounds; i++) {
        log(`dataplane ${n}: round ${i + 1}, both shapes`);
        const chosen = await latencyUnderSvcplane(sb, services, {}, measure);
        const fallback = await latencyUnderSvcplane(sb, services, { kernel: FALLBACK }, measure);
        rounds.push({ chosen, fallback });
      }
      const chosen = medianLatency(rounds.map((r) => r.chosen));
      const fallback = medianLatency(rounds.map((r) => r.fallback));
      log(`dataplane ${n}: p50/p99 chosen=${chosen.p50Us}/${chosen.p99Us}us fallback=${fallback.p50Us}/${fallback.p99Us}us`);
      run.dataplane.push({ services: n, chosen, fallback, rounds });
    }
  } finally {
    await sb.destroy();
  }
  const big = opts.sizes[opts.sizes.length - 1];
  const f = run.full.find((c) => c.services === big);
  const inc = (n: number) => run.incremental.find((c) => c.services === n);
  const dp = run.dataplane.find((d) => d.services === big);
  const worstP50 = (n: number) => { const c = inc(n); return c ? Math.max(c.addEndpoint.p50Ms, c.removeEndpoint.p50Ms) : null; };
  run.ratios = {
    [`full ${big} x 2: fallback shape / shape chosen`]: f?.ratios.svcplaneFallback ?? null,
    [`full ${big} x 2: kube-proxy nft -f / svcplane`]: f?.ratios.kubeProxyNft ?? null,
    [`full ${big} x 2: iptables-legacy-restore / svcplane`]: f?.ratios.iptablesLegacy ?? null,
    [`incremental p50 ${big} / ${opts.sizes[0]}`]: worstP50(big) && worstP50(opts.sizes[0]) ? worstP50(big)! / worstP50(opts.sizes[0])! : null,
    [`data plane p50 at ${big} Services: fallback shape / shape chosen`]: dp?.chosen?.p50Us && dp.fallback?.p50Us ? dp.fallback.p50Us / dp.chosen.p50Us : null,
  };
  return run;
}

async function inGuest(quick: boolean): Promise<void> {
  const run = await runHere({ sizes: quick ? [1000] : [1000, 10000], peerTimeoutMs: 600_000, reps: quick ? 20 : 50, connects: quick ? 300 : 1000, latencyRounds: quick ? 1 : 3, emulation: 'qemu TCG' });
  process.stdout.write(`${MARK}${JSON.stringify(run)}${MARK}\n`);
}

async function onHost(args: string[]): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (network namespaces, the guest harness)');
  const quick = args.includes('--quick');
  const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : path.join(RESULTS, 'kernels.json');
  const kernels = args.includes('--kernels') ? args[args.indexOf('--kernels') + 1].split(',').filter((k) => k && k !== 'none') : Object.keys(KNOWN_KERNELS);
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version },
    note: 'Per kernel: full sync seconds, incremental ms, data plane microseconds. Guest kernels run under qemu TCG (emulated CPU): compare ratios within one kernel\'s run only.',
    runs: [] as KernelRun[],
  };
  if (!args.includes('--guests-only')) {
    log(`this machine's kernel ${os.release()}`);
    result.runs.push(await runHere({ sizes: quick ? [1000] : [1000, 10000], peerTimeoutMs: 120_000, reps: quick ? 20 : 100, connects: quick ? 500 : 3000, latencyRounds: quick ? 1 : 5, emulation: 'native' }));
  }
  for (const k of kernels) {
    const image = prepareGuest(kernelPackage(k));
    log(`booting ${image.package} (${image.version}) under qemu/TCG`);
    const r = await runInGuest(`node --expose-gc dist/bench/kernels.js --in-guest${quick ? ' --quick' : ''}`, {
      image, timeoutMs: 120 * 60_000, memoryMiB: 3072, onOutput: (c) => process.stderr.write(c.replace(new RegExp(`${MARK}.*${MARK}`, 's'), '')),
    });
    const m = new RegExp(`${MARK}(.*)${MARK}`, 's').exec(r.output);
    if (r.code !== 0 || !m) throw new Error(`the guest run on ${image.version} failed (exit ${r.code})`);
    result.runs.push(JSON.parse(m[1]) as KernelRun);
  }
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${out}`);
  for (const run of result.runs) console.log(run.kernel, JSON.stringify(run.ratios, null, 2));
}

const argv = process.argv.slice(2);
(argv.includes('--in-guest') ? inGuest(argv.includes('--quick')) : onHost(argv)).catch((e: unknown) => {
  console.error(`bench failed: ${e instanceof Error ? e.stack : String(e)}`);
  process.exit(1);
});
