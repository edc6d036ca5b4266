// Kernel floors: what the kernel takes for the same objects a sync programmed when nothing is built, diffed or
// encoded. The difference between a sync and its floor is svcplane's own work.
import { native } from '../native';
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
 * The IPVS mode's writes of a sync (its Service-address link and routes over rtnetlink, virtual and real servers
 * over generic netlink) replayed as sent, in order, into an empty namespace: the kernel's share of the IPVS part.
 * The link is made by the writes themselves, so the routes' link index matches when the sync's namespace was new
 * too (svcplane bench's throwaway one); otherwise the kernel refuses a write and there is no floor (null).
 */
export function ipvsFloor(writes: IpvsWrite[]): Promise<{ seconds: number; messages: number } | null> {
  return inFreshNetns(async (netns) => {
    const T = native().NetlinkTransceiver;
    const socks = { generic: new T({ bus: 'generic', netns }), route: new T({ bus: 'route', netns }) };
    try {
      let messages = 0;
      const t0 = process.hrtime.bigint();
      for (const w of writes) {
        const sock = socks[w.bus];
        if (w.packed) {
          const r = await sock.transactPacked(w.packed, { ackLastOnly: true });
          if (r.failures.length) return null;
          messages += r.count;
        } else if (w.requests) {
          const r = await sock.transact(w.requests);
          if (r.results.some((x) => x.errno)) return null;
          messages += w.requests.length;
        }
      }
      return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, messages };
    } finally {
      socks.generic.close();
      socks.route.close();
    }
  });
}
