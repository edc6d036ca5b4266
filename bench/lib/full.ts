// The full-sync figures of the repository benchmarks' results files, measured by svcplane bench's own code
// (src/bench: sync.ts, floor.ts, peers/load.ts), each sample in a new empty namespace once the machine is quiet.
import type { BenchDataplaneOverrides } from '../../src/bench/dataplanes';
import { nftBatchFloor } from '../../src/bench/floor';
import { toModel } from '../../src/bench/model';
import type { PeerRun } from '../../src/bench/peers/exec';
import { type PeerTool, loadPeer } from '../../src/bench/peers/load';
import { type QuietWait, waitForQuiet } from '../../src/bench/quiet';
import type { BenchService } from '../../src/bench/shape';
import { fullSyncInFreshNode } from '../../src/bench/sync';

export interface ToolResult {
  seconds: number | null;
  timedOut?: boolean;
  error?: string;
  kernelSeconds?: number;
  phases?: Record<string, number>;
  /** every sample's seconds, when the tool ran more than once (seconds is then their median) */
  samples?: number[];
  /** how long the machine took to be quiet before the (median) sample, and its load then */
  quiet?: QuietWait;
}

/**
 * svcplane and the kernel floor take seconds, not minutes, so they run SAMPLES times (each in a fresh netns) and
 * report the median: one sample on this shared 2-vCPU machine swings by +-30%. The peers run once (minutes each).
 */
const SAMPLES = 3;
export async function median(run: () => Promise<ToolResult>): Promise<ToolResult> {
  const rs: ToolResult[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const r = await run();
    if (r.seconds === null) return r;
    rs.push(r);
  }
  rs.sort((a, b) => a.seconds! - b.seconds!);
  return { ...rs[Math.floor(rs.length / 2)], samples: rs.map((r) => r.seconds!) };
}

/** svcplane's nftables full sync of `services` into a new namespace (overrides.kernel pins a shape; else the probe's). */
export async function svcplaneFull(services: BenchService[], overrides?: BenchDataplaneOverrides): Promise<ToolResult> {
  let quiet: QuietWait | undefined;
  const r = await fullSyncInFreshNode('nftables', toModel(services), { overrides, before: async () => (quiet = await waitForQuiet()) });
  return { seconds: r.seconds, kernelSeconds: r.result.kernelMicros / 1e6, phases: r.result.phases, quiet };
}

/**
 * The kernel's share of that sync: its very batch (kept from one untimed sync) committed into new empty namespaces,
 * timed by the addon from send to the kernel's last reply (encoding left out). Median of SAMPLES.
 */
export async function kernelFloor(services: BenchService[]): Promise<ToolResult> {
  const { batch } = await fullSyncInFreshNode('nftables', toModel(services), { keepBatch: true });
  if (!batch) throw new Error('the full sync sent no nftables batch');
  return median(async () => {
    let quiet: QuietWait | undefined;
    const r = await nftBatchFloor(batch, async () => (quiet = await waitForQuiet()));
    return { ...r, quiet };
  });
}

const asToolResult = (r: PeerRun, quiet?: QuietWait): ToolResult =>
  r.seconds === null ? { seconds: null, ...(r.timedOut ? { timedOut: true } : { error: r.error }) } : { seconds: r.seconds, quiet };

/** A kube-proxy-shaped peer loading `services` into a new namespace (or `netns`), once the machine is quiet. */
export async function peerFull(tool: PeerTool, services: BenchService[], timeoutMs: number, netns?: string): Promise<ToolResult> {
  let quiet: QuietWait | undefined;
  const r = await loadPeer(tool, services, { netns, timeoutMs, before: async () => (quiet = await waitForQuiet()) });
  return asToolResult(r, quiet);
}
