// New-connection latency with a ruleset loaded in the sandbox's node, shared by the benches: svcplane's, and
// kube-proxy's nftables mode loaded with `nft -f`. Each removes what it loaded before returning. The loading is
// svcplane bench's (src/bench: openBenchDataplane, loadPeer); only the traffic is the benchmarks' own.
import { type BenchDataplaneOverrides, openBenchDataplane } from '../../src/bench/dataplanes';
import { toModel } from '../../src/bench/model';
import { benchNodeAt } from '../../src/bench/node';
import { execInNetns } from '../../src/bench/peers/exec';
import { loadPeer } from '../../src/bench/peers/load';
import type { BenchService } from '../../src/bench/shape';
import type { Sandbox } from '../../scripts/lib/sandbox';
import type { LatencyResult } from '../../scripts/lib/traffic';

/** `measure` with svcplane's nftables dataplane programmed for `services` in the sandbox's node. */
export async function latencyUnderSvcplane(sb: Sandbox, services: BenchService[], overrides: BenchDataplaneOverrides, measure: () => Promise<LatencyResult>): Promise<LatencyResult> {
  const node = benchNodeAt(sb.nodeNsPath);
  const { dataplane } = openBenchDataplane('nftables', node, overrides);
  try {
    await dataplane.syncFull(toModel(services));
    const r = await measure();
    await dataplane.cleanup();
    return r;
  } finally {
    dataplane.close();
    node.close();
  }
}

/** `measure` with kube-proxy's nftables ruleset loaded by `nft -f`; null (and why, in notes) when it did not load. */
export async function latencyUnderKubeProxyNft(sb: Sandbox, services: BenchService[], timeoutMs: number, measure: () => Promise<LatencyResult>, notes: string[]): Promise<LatencyResult | null> {
  const r = await loadPeer('nft -f', services, { netns: sb.nodeNsPath, timeoutMs });
  let out: LatencyResult | null = null;
  if (r.seconds !== null) out = await measure();
  else notes.push(r.timedOut ? `kube-proxy nft -f still loading after ${timeoutMs / 1000} s: not measured` : `nft -f failed: ${r.error?.slice(-200)}`);
  await execInNetns(sb.nodeNsPath, ['nft', 'delete', 'table', 'ip', 'kube-proxy']).catch(() => '');
  return out;
}

/** `measure` with kube-proxy's iptables rules loaded by iptables-legacy-restore (null when they did not load); flushed afterwards. */
export async function underKubeProxyIptables<T>(sb: Sandbox, services: BenchService[], timeoutMs: number, measure: () => Promise<T>, notes: string[]): Promise<T | null> {
  const r = await loadPeer('iptables-legacy-restore', services, { netns: sb.nodeNsPath, timeoutMs });
  let out: T | null = null;
  if (r.seconds !== null) out = await measure();
  else notes.push(`iptables-legacy-restore failed: ${r.error?.slice(-200)}`);
  for (const t of ['nat', 'filter']) {
    await execInNetns(sb.nodeNsPath, ['iptables-legacy', '-t', t, '-F']).catch(() => '');
    await execInNetns(sb.nodeNsPath, ['iptables-legacy', '-t', t, '-X']).catch(() => '');
  }
  return out;
}
