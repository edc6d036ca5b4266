// One bench run: for each mode and size, a full sync of N Services x M endpoints into the bench's node (and its
// kernel floor), then the churn phase: rolling-deployment changes arriving at the given rate for the given time,
// each programmed by a partial sync as the agent would (changes that arrive during a sync wait for the next one),
// timed from arrival to the sync's end. The mode's objects are removed after each case.
import * as os from 'node:os';
import type { Dataplane } from '../dataplane/types';
import type { ServicePort, ServicePortKey } from '../model/types';
import { type ChangeKind, RollingChurn } from './churn';
import { openBenchDataplane } from './dataplanes';
import { toModel } from './model';
import type { BenchNode } from './node';
import { IPVS_LINK, netlinkMessagesOf } from './dataplanes';
import { ipvsFloor, nftBatchFloor, socketLBFloor } from './floor';
import type { BenchMode, BenchOptions } from './options';
import type { Progress } from './progress';
import { type BenchCase, type BenchReport, type PeerCase, SCHEMA_ID } from './schema';
import { type PeerTool, loadPeer } from './peers/load';
import { latencyOf } from './stats';
import { timeFullSync } from './sync';
import { makeServices } from './shape';

/**
 * A stop asked for (SIGINT, SIGTERM: cli/bench.ts). The run stops between kernel operations, never inside one (a
 * full sync's commit landing after the clean-up would leave its table behind), removes what the case programmed,
 * and throws BenchInterrupted.
 */
export const stopRequest = { requested: false };

export class BenchInterrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

function checkStop(): void {
  if (stopRequest.requested) throw new BenchInterrupted();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()) / 1e6;

export async function runBench(options: BenchOptions, node: BenchNode, progress: Progress): Promise<BenchReport> {
  const cases: BenchCase[] = [];
  const total = options.modes.length * options.services.length;
  for (const mode of options.modes)
    for (const n of options.services) {
      progress.startCase(cases.length, total, `${mode} ${n}`);
      cases.push(await runCase(mode, n, options, node, progress));
    }
  const peers = options.peers ? await runPeers(options, progress) : undefined;
  progress.done();
  return {
    schema: SCHEMA_ID,
    date: new Date().toISOString(),
    machine: { kernel: os.release(), cpus: os.cpus().length },
    netns: node.throwaway ? 'throwaway' : node.netns,
    options: { modes: options.modes, services: options.services, endpoints: options.endpoints, churnPerSecond: options.churnPerSecond, durationSeconds: options.durationSeconds, warmupSeconds: options.warmupSeconds, peers: options.peers },
    cases,
    ...(peers ? { peers } : {}),
  };
}

async function runCase(mode: BenchMode, n: number, options: BenchOptions, node: BenchNode, progress: Progress): Promise<BenchCase> {
  const base = { mode, services: n, endpointsPerService: options.endpoints };
  const bench = openBenchDataplane(mode, node);
  const { dataplane, ebpf } = bench;
  const cpu0 = process.cpuUsage();
  let rss = process.memoryUsage().rss;
  try {
    try {
      await dataplane.prepare?.();
    } catch (e) {
      return { ...base, skipped: (e as Error).message };
    }
    checkStop();
    const model = toModel(makeServices(n, options.endpoints));
    progress.phase('full sync');
    const full = await timeFullSync(bench, model, true);
    rss = Math.max(rss, process.memoryUsage().rss);
    checkStop();
    progress.phase('kernel floor');
    const kernelFloorSeconds = full.batch ? (await nftBatchFloor(full.batch)).seconds : null;
    const socketLB = ebpf ? await socketLBFloor(ebpf) : undefined;
    const ipvsReplay = full.ipvsWrites && bench.ipvs ? await ipvsFloor(full.ipvsWrites, await bench.ipvs.link(IPVS_LINK)) : undefined;
    checkStop();
    const changes = new RollingChurn(model);
    const sampleRss = () => (rss = Math.max(rss, process.memoryUsage().rss));
    if (options.warmupSeconds > 0) {
      progress.phase('warm-up', options.warmupSeconds);
      await runChurn(dataplane, changes, options.churnPerSecond, options.warmupSeconds, () => netlinkMessagesOf(bench), sampleRss);
    }
    progress.phase('churn', options.durationSeconds);
    const churn = await runChurn(dataplane, changes, options.churnPerSecond, options.durationSeconds, () => netlinkMessagesOf(bench), sampleRss);
    progress.phase('cleanup');
    await dataplane.cleanup();
    const cpu = process.cpuUsage(cpu0);
    return {
      ...base,
      fullSync: { seconds: full.seconds, phases: secondsOf(full.result.phases ?? {}), kernelFloorSeconds, ...(socketLB ? { socketLBFloorSeconds: socketLB.seconds, socketLBEntries: socketLB.entries } : {}), ...(ipvsReplay ? ('refused' in ipvsReplay ? { ipvsFloorSeconds: null, ipvsFloorRefused: ipvsReplay.refused } : { ipvsFloorSeconds: ipvsReplay.seconds }) : {}), operations: full.result.operations, bytes: full.result.bytes, netlinkMessages: full.netlinkMessages },
      churn,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      rssBytes: rss,
    };
  } catch (e) {
    // Interrupted, or the kernel refused: a --netns namespace keeps nothing of the bench's either way.
    await dataplane.cleanup().catch(() => false);
    throw e;
  } finally {
    dataplane.close();
  }
}

/** A peer's limit: kube-proxy's own nft -f of 30k Services takes tens of seconds on these machines. */
const PEER_TIMEOUT_MS = 300_000;

/** Each size's Services loaded by kube-proxy-shaped peers, each into an empty namespace of its own. */
async function runPeers(options: BenchOptions, progress: Progress): Promise<PeerCase[]> {
  const tools: PeerTool[] = ['nft -f', 'iptables-restore', ...(options.modes.includes('ipvs') ? ['ipvsadm --restore' as const] : [])];
  const out: PeerCase[] = [];
  for (const n of options.services) {
    const services = makeServices(n, options.endpoints);
    progress.startCase(0, 1, `peers ${n}`);
    for (const tool of tools) {
      checkStop();
      progress.phase(tool);
      out.push({ services: n, tool, ...(await loadPeer(tool, services, { timeoutMs: PEER_TIMEOUT_MS })) });
    }
  }
  return out;
}

/** "buildMicros" -> "build" in seconds, "socketLB" (µs) -> "socketLB" in seconds. */
function secondsOf(phases: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(phases).map(([k, us]) => [k.replace(/Micros$/, ''), us / 1e6]));
}

/** `perSecond` changes from `gen` for `seconds`, each timed from its arrival to the end of the sync that programmed it. */
async function runChurn(dp: Dataplane, gen: RollingChurn, perSecond: number, seconds: number, messages: () => number, sample: () => void): Promise<NonNullable<BenchCase['churn']>> {
  const interval = 1000 / perSecond;
  const latencies: number[] = [];
  const byKind: Partial<Record<ChangeKind, number>> = {};
  let operations = 0;
  let bytes = 0;
  let syncs = 0;
  const messages0 = messages();
  const start = now();
  const end = start + seconds * 1000;
  let due = start; // when the next change arrives
  let freeSince = start; // when the last sync ended
  while (due < end) {
    checkStop();
    const t = now();
    if (t < due) await sleep(Math.min(due - t, end - t, 200));
    checkStop();
    const wake = now();
    // Every change that has arrived by now goes into this sync, keyed by Service port (a later one wins). A change
    // that arrived during the last sync waited from its arrival (the agent's queueing, measured); one that arrived
    // while idle counts from now: the timer's own lateness is this loop's, not what an agent woken by a watch
    // event would see.
    const arrived: number[] = [];
    const batch = new Map<ServicePortKey, ServicePort | undefined>();
    while (due <= wake && due < end) {
      const c = gen.next();
      batch.set(c.key, c.servicePort);
      byKind[c.kind] = (byKind[c.kind] ?? 0) + 1;
      arrived.push(due < freeSince ? due : wake);
      due += interval;
    }
    if (batch.size === 0) continue;
    const r = await dp.syncPartial(batch);
    const done = now();
    freeSince = done;
    syncs++;
    operations += r.operations;
    bytes += r.bytes;
    for (const a of arrived) latencies.push(done - a);
    sample();
  }
  const changes = latencies.length;
  const per = (x: number) => (changes ? x / changes : 0);
  return {
    ratePerSecond: perSecond,
    seconds: (now() - start) / 1000,
    changes,
    syncs,
    latency: latencyOf(latencies),
    byKind,
    perChange: { operations: per(operations), bytes: per(bytes), netlinkMessages: per(messages() - messages0) },
  };
}
