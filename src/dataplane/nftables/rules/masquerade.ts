// Which Service traffic is masqueraded, and how: a rule of the `services` chain (nat prerouting / output, before
// DNAT) sets a mark bit (kube-proxy's 0x4000) on traffic that must leave with the node's address, and the
// `masquerading` chain (nat postrouting) clears it and masquerades. Both tables mark alike (the nftables mode's,
// skeleton.ts, and the IPVS mode's, ipvs/filter.ts, whose sets carry the same names), so the marks are made here.
// Why a mark: the choice needs the Service address, which DNAT (or IPVS) has replaced by postrouting, the only hook
// where masquerading can happen.
import { IPS_DST_NAT, NFT_CT_STATUS, NFT_META_MARK, NFT_PAYLOAD_NETWORK_HEADER, NFT_REG32_00, NFT_REG_1, NF_NAT_RANGE_PROTO_RANDOM_FULLY } from '../netlink/constants';
import { RuleBuilder, hostU32 } from '../netlink/expr';
import type { NftablesConfig } from './config';
import { type FamilyShape, canTellPods, daddrIn, daddrProtoPort, fromNode, nodePortRules, notFromPods, protoPort } from './match';
import { SETS } from './names';

export function markForMasquerade(r: RuleBuilder, cfg: NftablesConfig): RuleBuilder {
  const bit = 1 << cfg.masqueradeBit;
  return r.metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(~bit), hostU32(bit))
    .metaSet(NFT_META_MARK, NFT_REG_1);
}

/**
 * ClusterIP traffic (the address alone: service-ips also holds external addresses, which follow their own policy,
 * externalPolicyMarks): masqueraded from off-cluster sources (not from a pod CIDR), so replies come back through this
 * node; all of it with masqueradeAll. None when pods cannot be told from the rest (the IPVS mode has a rule of its
 * own for that case).
 */
export function clusterIPMarks(f: FamilyShape, cfg: NftablesConfig): Buffer[] {
  if (cfg.masqueradeAll) return [markForMasquerade(daddrIn(new RuleBuilder(), f, SETS.clusterIPs), cfg).body()];
  if (canTellPods(f, cfg)) return [markForMasquerade(daddrIn(notFromPods(new RuleBuilder(), f, cfg), f, SETS.clusterIPs), cfg).body()];
  return [];
}

/**
 * externalTrafficPolicy (kube-proxy's external chain): external addresses and NodePorts of policy Cluster are always
 * masqueraded; under Local only the node's own traffic is (clients from outside keep their source, and this node's
 * pods are sent to all endpoints: what the nftables mode's pick-local-* chains and the drop sets decide).
 */
export function externalPolicyMarks(f: FamilyShape, cfg: NftablesConfig): Buffer[] {
  const markIf = (r: RuleBuilder, set: string) => markForMasquerade(r.lookup(set, NFT_REG32_00), cfg).body();
  return [
    markIf(daddrProtoPort(new RuleBuilder(), f), SETS.externalIPs),
    markIf(daddrProtoPort(fromNode(new RuleBuilder(), true), f), SETS.localPolicyIPs),
    ...nodePortRules(f, cfg, (r) => markIf(protoPort(r), SETS.masqNodePorts)),
    ...nodePortRules(f, cfg, (r) => markIf(protoPort(fromNode(r, true)), SETS.localPolicyNodePorts)),
  ];
}

/**
 * The masquerading chain's rules: what a Service chain marked, and hairpin traffic (source . destination in the
 * hairpin set). `hairpinDnatOnly`: a hairpin pair counts only on connections conntrack DNATed (the nftables mode's
 * own DNAT); the IPVS mode's table matches the pair alone.
 */
export function masqueradeRules(f: FamilyShape, cfg: NftablesConfig, hairpinDnatOnly: boolean): Buffer[] {
  const bit = 1 << cfg.masqueradeBit;
  // One RuleBuilder at a time (expr.ts): each rule is started only when the one before it is finished.
  const dnatted = () => {
    const r = new RuleBuilder();
    return hairpinDnatOnly ? r.ctGet(NFT_CT_STATUS, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(IPS_DST_NAT), hostU32(0)).cmp(NFT_REG_1, 'neq', hostU32(0)) : r;
  };
  return [
    // Marked by a Service chain: clear the mark (it must not leak into routing decisions) and masquerade.
    new RuleBuilder().metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(bit), hostU32(0))
      .cmp(NFT_REG_1, 'neq', hostU32(0))
      .metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(~bit), hostU32(0))
      .metaSet(NFT_META_MARK, NFT_REG_1)
      .masquerade(NF_NAT_RANGE_PROTO_RANDOM_FULLY).body(),
    // Hairpin: an endpoint reaching itself through its Service must see the node as the source, or its
    // reply would go straight back to itself and never be un-DNATed.
    dnatted()
      .payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen)
      .payload(NFT_REG32_00 + f.addrLen / 4, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
      .lookup(SETS.hairpin, NFT_REG32_00)
      .masquerade(NF_NAT_RANGE_PROTO_RANDOM_FULLY).body(),
  ];
}
