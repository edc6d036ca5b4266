// Kernel floors: what the kernel takes for the same objects a sync programmed when nothing is built, diffed or
// encoded. The difference between a sync and its floor is svcplane's own work.
import { native } from '../native';
import { IpvsClient } from '../dataplane/ipvs/client';
import { newDummyLinkRequest } from '../netlink/rtnl';
import type { EbpfKernel } from '../dataplane/ebpf/kernel';
import { MAP } from '../dataplane/ebpf/layout';
import type { IpvsWrite } from './dataplanes';
import { inFreshNetns } from './node';

/**
 * A sync's nftables batch committed into an empty namespace, timed by the addon from send to the kernel's last reply
 * (kernelSeconds: inside sendmsg); `beforeTiming` runs once the namespace is there.
 */
export function nftBatchFloor(batch: Buffer, beforeTiming: () => Promise<unknown> = async () => undefined): Promise<{ seconds: number; kernelSeconds: number }> {
  return inFreshNetns(async (netns) => {
    const sock = new (native().NftSocket)({ netns });
    try {
      await beforeTiming();
      const r = await sock.commit(batch);
      return { seconds: (r.totalMicros - (r.encodeMicros ?? 0)) / 1e6, kernelSeconds: r.kernelMicros / 1e6 };
    } finally {
      sock.close();
    }
  });
}

/**
 * The socket-LB maps' entries as the sync left them, deleted, then written back with one raw batch per map (in the
 * sync's order), timed; `beforeTiming` runs between the two (a bench waits for a quiet machine there).
 */
export async function socketLBFloor(kernel: EbpfKernel, beforeTiming: () => Promise<unknown> = async () => undefined): Promise<{ seconds: number; entries: number }> {
  const order = [MAP.backends, MAP.slots, MAP.members, MAP.services];
  const dumps = [];
  for (const m of order) dumps.push({ map: m, ...(await kernel.dump(m)) });
  for (const d of [...dumps].reverse()) await kernel.delete(d.map, d.keys);
  await beforeTiming();
  const t0 = process.hrtime.bigint();
  for (const d of dumps) await kernel.update(d.map, d.keys, d.values);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, entries: dumps.reduce((s, d) => s + d.count, 0) };
}

/**
 * The IPVS mode's writes of a sync (Service-address routes over rtnetlink, virtual and real servers over generic
 * netlink) replayed as sent, in order, into an empty namespace: the kernel's share of the IPVS part. The routes name
 * the mode's link by index, so the link is made there first (untimed) at the index it has in the sync's namespace;
 * the sync's own "create the link" write then finds it (EEXIST, which that write tolerates). When the kernel refuses
 * a write, `refused` says which.
 */
export function ipvsFloor(writes: IpvsWrite[], link: { name: string; index: number } | undefined): Promise<{ seconds: number } | { refused: string }> {
  return inFreshNetns(async (netns) => {
    const kernel = new IpvsClient({ netns });
    try {
      if (link) {
        const made = await kernel.applyRoute([{ request: newDummyLinkRequest(link.name, link.index), describe: `create dummy link ${link.name} at index ${link.index}` }]);
        if (made.failures.length) return { refused: kernel.error(made.failures).message };
      }
      const t0 = process.hrtime.bigint();
      for (const w of writes) {
        const r = w.bus === 'generic' ? await kernel.applyIpvs(w.ops) : await kernel.applyRoute(w.ops);
        if (r.failures.length) return { refused: kernel.error(r.failures).message };
      }
      return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
    } finally {
      kernel.close();
    }
  });
}
