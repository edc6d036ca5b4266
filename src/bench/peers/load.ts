// A kube-proxy-shaped peer loading Services into a namespace, timed: the one implementation svcplane bench --peers
// and the repository benchmarks share. Into a new empty namespace of its own, or one given (a sandbox's node, whose
// traffic a benchmark then measures). Only the loading command is timed: the set-up kube-proxy has done by then
// (the iptables jump rules, lo up for IPVS) goes first, untimed.
import { IpvsClient } from '../../dataplane/ipvs/client';
import { setLinkUpRequest } from '../../netlink/rtnl';
import { inFreshNetns } from '../node';
import type { BenchService } from '../shape';
import { type PeerRun, runPeerInNetns } from './exec';
import { KUBE_PROXY_IPTABLES_RESTORE_FLAGS, kubeProxyIptablesJumpRules, kubeProxyIptablesRestore } from './kubeproxy-iptables';
import { kubeProxyNftablesRuleset } from './kubeproxy-nftables';

/**
 * The peers, as run: "nft -f" (kube-proxy's nftables mode), "iptables-restore" (its iptables mode, with whichever
 * backend the node's alternatives pick; the -legacy and -nft ones by name), "ipvsadm --restore" (its IPVS mode's
 * virtual and real servers only).
 */
export const PEER_TOOLS = ['nft -f', 'iptables-restore', 'iptables-legacy-restore', 'iptables-nft-restore', 'ipvsadm --restore'] as const;
export type PeerTool = (typeof PEER_TOOLS)[number];

export interface LoadPeerOptions {
  /** The namespace file to load into; default a new empty one, gone afterwards. */
  netns?: string;
  timeoutMs: number;
  /** Runs after the untimed set-up, right before the timed load (a benchmark waits for a quiet machine there). */
  before?: () => Promise<unknown>;
}

export function loadPeer(tool: PeerTool, services: BenchService[], opts: LoadPeerOptions): Promise<PeerRun> {
  const run = async (netns: string): Promise<PeerRun> => {
    const load = async (argv: readonly string[], input: string) => (await opts.before?.(), runPeerInNetns(netns, argv, input, opts.timeoutMs));
    if (tool === 'nft -f') return load(['nft', '-f', '-'], kubeProxyNftablesRuleset(services));
    if (tool === 'ipvsadm --restore') {
      await loopbackUp(netns);
      return load(['ipvsadm', '--restore'], ipvsadmRestore(services));
    }
    const argv = [tool, ...KUBE_PROXY_IPTABLES_RESTORE_FLAGS];
    const jumps = await runPeerInNetns(netns, argv, kubeProxyIptablesJumpRules(), opts.timeoutMs);
    if (jumps.seconds === null) return { seconds: null, error: `the jump rules: ${jumps.error}` };
    return load(argv, kubeProxyIptablesRestore(services));
  };
  return opts.netns ? run(opts.netns) : inFreshNetns(run);
}

/**
 * IPVS takes a real server only at a unicast address, and in a namespace without a local routing table (a new one:
 * no address, lo down) every address types as broadcast (ip_vs_new_dest: EINVAL, "address not unicast"). kube-proxy
 * has its kube-ipvs0 addresses by then; lo up (over rtnetlink) gives the peer that table.
 */
async function loopbackUp(netns: string): Promise<void> {
  const client = new IpvsClient({ netns });
  try {
    await client.applyRoute([{ request: setLinkUpRequest(1), describe: 'set lo up' }]); // lo is ifindex 1 in every namespace
  } finally {
    client.close();
  }
}

/**
 * kube-proxy's IPVS mode's virtual services and real servers (round robin, masquerading, weight 1) as `ipvsadm
 * --restore` input. Only those: its kube-ipvs0 addresses and its ipset and iptables rules are not in the peer's time,
 * which makes the peer faster than kube-proxy's whole IPVS sync, not slower.
 */
export function ipvsadmRestore(services: BenchService[]): string {
  const lines: string[] = [];
  for (const s of services) {
    const vs = `-t ${s.clusterIP}:${s.port}`;
    lines.push(`-A ${vs} -s rr`);
    for (const e of s.endpoints) lines.push(`-a ${vs} -r ${e.ip}:${e.port} -m -w 1`);
  }
  return `${lines.join('\n')}\n`;
}
