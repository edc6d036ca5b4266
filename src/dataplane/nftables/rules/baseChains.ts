// The base chains (the ones hooked into netfilter) as data, and the prologue both tables start with: each base chain
// only jumps to regular chains, unconditionally (nat) or for new connections (filter), as kube-proxy's nftables
// proxier does with its nftablesBaseChains and nftablesJumpChains tables. A table's base chains are those its jump
// list names (NFTABLES_JUMPS here; the IPVS mode's in ipvs/filter.ts), in the order they first appear there.
//
// The priorities are kube-proxy's nftables mode's, which made them the convention: nat at -100 (dstnat) and 100
// (srcnat); the filter checks at -110, before DNAT, so a rejected or dropped packet still has its Service address;
// filter-output-post-dnat at -90, after the nat output chain, where what still goes to a ClusterIP went to a port
// no Service serves. filter-input (the IPVS mode's) is at 0, before IPVS takes new connections at LOCAL_IN (98).
import { NF_INET_FORWARD, NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING } from '../netlink/constants';
import { RuleBuilder } from '../netlink/expr';
import type { BaseChainSpec, ChainState } from '../objects';
import { ctStateNew } from './match';
import { CHAINS } from './names';

export interface BaseChain extends BaseChainSpec {
  name: string;
}

/** Every base chain either table has: name, type, hook, priority. */
export const BASE_CHAINS = {
  natPrerouting: { name: CHAINS.natPrerouting, type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100 },
  natOutput: { name: CHAINS.natOutput, type: 'nat', hook: NF_INET_LOCAL_OUT, priority: -100 },
  natPostrouting: { name: CHAINS.natPostrouting, type: 'nat', hook: NF_INET_POST_ROUTING, priority: 100 },
  filterPrerouting: { name: CHAINS.filterPrerouting, type: 'filter', hook: NF_INET_PRE_ROUTING, priority: -110 },
  filterInput: { name: CHAINS.filterInput, type: 'filter', hook: NF_INET_LOCAL_IN, priority: 0 },
  filterOutput: { name: CHAINS.filterOutput, type: 'filter', hook: NF_INET_LOCAL_OUT, priority: -110 },
  filterForward: { name: CHAINS.filterForward, type: 'filter', hook: NF_INET_FORWARD, priority: -110 },
  filterOutputPostDnat: { name: CHAINS.filterOutputPostDnat, type: 'filter', hook: NF_INET_LOCAL_OUT, priority: -90 },
} as const satisfies Record<string, BaseChain>;

/** A base chain's rule: jump to regular chain `to`, for every packet or only for new connections (`ct state new`). */
export interface Jump {
  from: BaseChain;
  to: string;
  newOnly: boolean;
}

/** The nftables mode's prologue. */
export const NFTABLES_JUMPS: readonly Jump[] = [
  { from: BASE_CHAINS.natPrerouting, to: CHAINS.services, newOnly: false },
  { from: BASE_CHAINS.natOutput, to: CHAINS.services, newOnly: false },
  { from: BASE_CHAINS.natPostrouting, to: CHAINS.masquerading, newOnly: false },
  // Before DNAT: no endpoints, Local policy drops, loadBalancerSourceRanges.
  { from: BASE_CHAINS.filterPrerouting, to: CHAINS.endpointsCheck, newOnly: true },
  { from: BASE_CHAINS.filterOutput, to: CHAINS.endpointsCheck, newOnly: true },
  // After DNAT: unused ports of ClusterIPs, unallocated Service addresses.
  { from: BASE_CHAINS.filterForward, to: CHAINS.clusterIPsCheck, newOnly: true },
  { from: BASE_CHAINS.filterOutputPostDnat, to: CHAINS.clusterIPsCheck, newOnly: true },
];

/** The base chains `jumps` name, each with its jumps in the order given (base chains in first-appearance order). */
export function baseChains(jumps: readonly Jump[]): ChainState[] {
  const out = new Map<string, ChainState>();
  for (const j of jumps) {
    let c = out.get(j.from.name);
    if (!c) {
      const { name, type, hook, priority } = j.from;
      out.set(name, (c = { name, rules: [], base: { type, hook, priority } }));
    }
    const r = j.newOnly ? ctStateNew(new RuleBuilder()) : new RuleBuilder();
    c.rules.push(r.verdict({ kind: 'jump', chain: j.to }).body());
  }
  return [...out.values()];
}
