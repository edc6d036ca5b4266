// New-connection latency with a ruleset loaded in the sandbox's node, shared by the benches: svcplane's, and
// kube-proxy's nftables mode loaded with `nft -f`. Each removes what it loaded before returning.
import { NetlinkNftClient } from '../../src/dataplane/nftables/client';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import type { NftablesConfig } from '../../src/dataplane/nftables/rules/config';
import type { Sandbox } from '../../scripts/lib/sandbox';
import type { LatencyResult } from '../../scripts/lib/traffic';
import { kubeProxyNftablesRuleset } from '../../src/bench/peers/kubeproxy-nftables';
import { PEER_ARGV, execInNetns, runPeer } from '../peers/run';
import type { BenchService } from '../../src/bench/shape';
import { toModel } from '../../src/bench/model';

/** `measure` with svcplane's nftables dataplane programmed for `services` in the sandbox's node. */
export async function latencyUnderSvcplane(sb: Sandbox, services: BenchService[], config: NftablesConfig, measure: () => Promise<LatencyResult>): Promise<LatencyResult> {
  const p = new NftablesProxier(new NetlinkNftClient({ netns: sb.nodeNsPath }), config);
  try {
    await p.syncFull(toModel(services));
    const r = await measure();
    await p.cleanup();
    return r;
  } finally {
    p.close();
  }
}

/** `measure` with kube-proxy's nftables ruleset loaded by `nft -f`; null (and why, in notes) when it did not load. */
export async function latencyUnderKubeProxyNft(sb: Sandbox, services: BenchService[], timeoutMs: number, measure: () => Promise<LatencyResult>, notes: string[]): Promise<LatencyResult | null> {
  const r = await runPeer(PEER_ARGV.nft, kubeProxyNftablesRuleset(services), { netns: sb.nodeNs, timeoutMs, input: 'stdin' });
  let out: LatencyResult | null = null;
  if (r.code === 0) out = await measure();
  else notes.push(r.timedOut ? `kube-proxy nft -f still loading after ${timeoutMs / 1000} s: not measured` : `nft -f failed: ${r.stderr.slice(-200)}`);
  await execInNetns(sb.nodeNs, ['nft', 'delete', 'table', 'ip', 'kube-proxy']).catch(() => '');
  return out;
}
