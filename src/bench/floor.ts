// Kernel floors: what the kernel takes for the same objects a sync programmed when nothing is built, diffed or
// encoded. The difference between a sync and its floor is svcplane's own work.
import { native } from '../native';
import type { EbpfKernel } from '../dataplane/ebpf/kernel';
import { MAP } from '../dataplane/ebpf/layout';
import { inFreshNetns } from './node';

/** A sync's nftables batch committed into an empty namespace, timed by the addon from send to the kernel's last reply. */
export function nftBatchFloor(batch: Buffer): Promise<number> {
  return inFreshNetns(async (netns) => {
    const sock = new (native().NftSocket)({ netns });
    try {
      const r = await sock.commit(batch);
      return (r.totalMicros - (r.encodeMicros ?? 0)) / 1e6;
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
