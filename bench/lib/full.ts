// Full-sync timings shared by the benches: svcplane, the kernel floor (svcplane's own batch, timed from its send
// to the kernel's last reply) and the kube-proxy-shaped peers, each in a fresh network namespace once the machine is quiet.
import { NetlinkNftClient, type NftClient } from '../../src/dataplane/nftables/client';
import { FULL_SUPPORT } from '../../src/dataplane/nftables/kernel';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import type { NftablesConfig } from '../../src/dataplane/nftables/rules/config';
import type { NftTransaction } from '../../src/dataplane/nftables/transaction';
import { native } from '../../src/native';
import { kubeProxyIptablesJumpRules, kubeProxyIptablesRestore } from '../../src/bench/peers/kubeproxy-iptables';
import { kubeProxyNftablesRuleset } from '../../src/bench/peers/kubeproxy-nftables';
import { PEER_ARGV, runPeer, withFreshNetns, type PeerResult } from '../peers/run';
import type { BenchService } from '../../src/bench/shape';
import { toModel } from '../../src/bench/model';
import { waitForQuiet, type QuietWait } from './quiet';

const secs = (us: number) => us / 1e6;

/** An NftClient that keeps the transaction instead of sending it (the kernel floor needs the exact batch). */
class CaptureClient implements NftClient {
  records: Buffer | undefined;
  async run(tx: NftTransaction) {
    this.records = Buffer.from(tx.records());
    return { operations: tx.size, messages: tx.size + 2, bytes: this.records.length, kernelMicros: 0, totalMicros: 0 };
  }
  async dumpTable() {
    return undefined;
  }
  async check() {
    return { errors: [], lostReports: false };
  }
  close() {}
}

// ---- full sync ------------------------------------------------------------------------------------------------

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

/** Runs one timed tool once the machine is quiet (see lib/quiet.ts), recording the wait. */
export async function quietly(run: () => Promise<ToolResult>): Promise<ToolResult> {
  const quiet = await waitForQuiet();
  return { ...(await run()), quiet };
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

/** svcplane's full sync of `services` into a fresh namespace (config.kernel pins a shape; else the kernel's probe). */
export async function svcplaneFull(services: BenchService[], config: NftablesConfig): Promise<ToolResult> {
  const model = toModel(services);
  return withFreshNetns(async (ns) => {
    const p = new NftablesProxier(new NetlinkNftClient({ netns: `/run/netns/${ns}` }), { ...config });
    try {
      const quiet = await waitForQuiet();
      const t0 = process.hrtime.bigint();
      const r = await p.syncFull(model);
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      return { seconds: wall, kernelSeconds: secs(r.kernelMicros), phases: r.phases, quiet };
    } finally {
      p.close();
    }
  });
}

/**
 * svcplane's own batch for `services`, committed as the agent commits it, timed by the addon from its send to the
 * kernel's last reply (the encoding before it, which the addon times apart, left out): the kernel's share of a full sync.
 */
export async function kernelFloor(services: BenchService[], config: NftablesConfig): Promise<ToolResult> {
  const capture = new CaptureClient();
  // The capture client has no kernel to probe: the batch takes the shape the config pins (default: native).
  await new NftablesProxier(capture, { kernel: FULL_SUPPORT, ...config }).syncFull(toModel(services));
  return withFreshNetns(async (ns) => {
    const sock = new (native().NftSocket)({ netns: `/run/netns/${ns}` });
    try {
      const quiet = await waitForQuiet();
      const r = await sock.commit(capture.records!);
      return { seconds: secs(r.totalMicros - (r.encodeMicros ?? 0)), kernelSeconds: secs(r.kernelMicros), quiet };
    } finally {
      sock.close();
    }
  });
}

export function peer(r: PeerResult): ToolResult {
  if (r.timedOut) return { seconds: null, timedOut: true };
  if (r.code !== 0) return { seconds: null, error: r.stderr.slice(-500) };
  return { seconds: r.seconds };
}

/** `nft -f` of kube-proxy's nftables-mode ruleset for `services`, in a fresh namespace. */
export async function nftPeer(services: BenchService[], timeoutMs: number): Promise<ToolResult> {
  const input = kubeProxyNftablesRuleset(services);
  return withFreshNetns(async (ns) => quietly(async () => peer(await runPeer(PEER_ARGV.nft, input, { netns: ns, timeoutMs, input: 'stdin' }))));
}

/** iptables-(legacy|nft)-restore of kube-proxy's iptables-mode rules for `services`, in a fresh namespace. */
export async function iptablesPeer(kind: 'iptablesLegacy' | 'iptablesNft', services: BenchService[], timeoutMs: number): Promise<ToolResult> {
  const input = kubeProxyIptablesRestore(services);
  return withFreshNetns(async (ns) => {
    const jumps = await runPeer(PEER_ARGV[kind], kubeProxyIptablesJumpRules(), { netns: ns, timeoutMs, input: 'stdin' });
    if (jumps.code !== 0) return { seconds: null, error: `jump rules: ${jumps.stderr.slice(-300)}` };
    return quietly(async () => peer(await runPeer(PEER_ARGV[kind], input, { netns: ns, timeoutMs, input: 'stdin' })));
  });
}

