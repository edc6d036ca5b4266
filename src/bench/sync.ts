// A full sync timed as svcplane bench and the repository benchmarks time it: wall time around the dataplane's
// syncFull, with its netlink messages counted and (for the kernel floor) its nftables batch kept.
import type { SyncResult } from '../dataplane/types';
import type { ServicePort, ServicePortKey } from '../model/types';
import { type BenchDataplaneOverrides, type BenchDataplane, type IpvsWrite, netlinkMessagesOf, openBenchDataplane } from './dataplanes';
import { inFreshNode } from './node';

export interface TimedFullSync {
  seconds: number;
  result: SyncResult;
  /** Netlink messages the sync wrote (nftables; the ipvs mode's IPVS and rtnetlink too). */
  netlinkMessages: number;
  /** The sync's last nftables batch (the kernel floor's input), when asked for. */
  batch?: Buffer;
  /** The ipvs mode's IPVS and rtnetlink writes, in order (the IPVS floor's input), when asked for. */
  ipvsWrites?: IpvsWrite[];
}

export async function timeFullSync(bench: BenchDataplane, model: Map<ServicePortKey, ServicePort>, keepBatch = false): Promise<TimedFullSync> {
  const { dataplane, nft, ipvs } = bench;
  const messages0 = netlinkMessagesOf(bench);
  nft.keepBatch = keepBatch;
  if (ipvs) ipvs.keepWrites = keepBatch;
  try {
    const t0 = process.hrtime.bigint();
    const result = await dataplane.syncFull(model);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return {
      seconds, result, netlinkMessages: netlinkMessagesOf(bench) - messages0,
      ...(keepBatch && nft.lastBatch ? { batch: nft.lastBatch } : {}),
      ...(keepBatch && ipvs ? { ipvsWrites: ipvs.takeWrites() } : {}),
    };
  } finally {
    nft.keepBatch = false;
    nft.lastBatch = undefined;
    ipvs?.takeWrites();
  }
}

/**
 * One full-sync sample in a new empty namespace (its first sync: nothing held, as a node's first), which goes after
 * it. `setup` runs in the new namespace first (bench:ipvs adds its pod network's link), `before` right before the
 * timing (a benchmark waits for a quiet machine).
 */
export function fullSyncInFreshNode(mode: 'nftables' | 'ipvs', model: Map<ServicePortKey, ServicePort>, opts: { overrides?: BenchDataplaneOverrides; keepBatch?: boolean; setup?: (netns: string) => Promise<unknown>; before?: () => Promise<unknown> } = {}): Promise<TimedFullSync> {
  return inFreshNode(async (node) => {
    await opts.setup?.(node.netns);
    const bench = openBenchDataplane(mode, node, opts.overrides);
    try {
      await opts.before?.();
      return await timeFullSync(bench, model, opts.keepBatch);
    } finally {
      bench.dataplane.close();
    }
  });
}
