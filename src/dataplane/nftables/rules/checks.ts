// The filter checks both tables make on new connections, as kube-proxy's nftables mode does: before DNAT (or before
// IPVS), a Service port without endpoints is rejected at once and one whose endpoints are all elsewhere under a
// Local policy is dropped; after DNAT, what still goes to an address in a Service CIDR that no Service holds is
// dropped. Rejected means TCP reset, ICMP port unreachable otherwise (the reject chain). The nftables mode's
// endpoints-check chain and the IPVS mode's input-check chain start with the same rules (endpointChecks).
import { ICMP_PORT_UNREACH, ICMPV6_PORT_UNREACH, IPPROTO, NFT_META_L4PROTO, NFT_REG32_00, NFT_REG_1, NFT_REJECT_ICMP_UNREACH, NFT_REJECT_TCP_RST } from '../netlink/constants';
import { RuleBuilder } from '../netlink/expr';
import type { NftablesConfig } from './config';
import { firewallRule } from './firewall';
import { type FamilyShape, addressIn, cidrsOf, daddrProtoPort, fromOutside, nodePortRules, protoPort } from './match';
import { CHAINS, SETS } from './names';

/**
 * Before DNAT, new connections only: a firewalled LB IP drops a source outside its ranges (firewall.ts); no endpoints
 * at all is refused at once; endpoints elsewhere but none here under a Local policy is dropped (for external traffic
 * only from outside: pods and the node short-circuit).
 */
export function endpointChecks(f: FamilyShape, cfg: NftablesConfig): Buffer[] {
  const goto = (r: RuleBuilder, set: string, target: string) => r.lookup(set, NFT_REG32_00).verdict({ kind: 'goto', chain: target }).body();
  const drop = (r: RuleBuilder, set: string) => r.lookup(set, NFT_REG32_00).verdict({ kind: 'drop' }).body();
  return [
    firewallRule(f),
    goto(daddrProtoPort(new RuleBuilder(), f), SETS.noEndpointServices, CHAINS.reject),
    ...nodePortRules(f, cfg, (r) => goto(protoPort(r), SETS.noEndpointNodePorts, CHAINS.reject)),
    drop(daddrProtoPort(new RuleBuilder(), f), SETS.dropServices),
    drop(daddrProtoPort(fromOutside(new RuleBuilder(), f, cfg), f), SETS.dropExternal),
    ...nodePortRules(f, cfg, (r) => drop(protoPort(fromOutside(r, f, cfg)), SETS.dropNodePorts)),
  ];
}

/**
 * `daddr in <each Service CIDR of this family> drop`, one rule per CIDR (a cluster has one or two per family).
 * Placed after Service traffic was DNATed (or, in IPVS mode, after ClusterIPs returned), so what still goes to
 * such an address is to one no Service holds.
 */
export function unallocatedDrops(f: FamilyShape, cfg: NftablesConfig): Buffer[] {
  return cidrsOf(cfg.serviceCIDRs ?? [], f.ip).map((c) => addressIn(new RuleBuilder(), f, f.daddrOffset, c).verdict({ kind: 'drop' }).body());
}

/** The reject chain's rules: TCP is answered with a reset, the rest with ICMP port unreachable. */
export function rejectRules(f: FamilyShape): Buffer[] {
  return [
    new RuleBuilder().metaGet(NFT_META_L4PROTO, NFT_REG_1).cmp(NFT_REG_1, 'eq', Buffer.from([IPPROTO.TCP]))
      .reject(NFT_REJECT_TCP_RST).body(),
    new RuleBuilder().reject(NFT_REJECT_ICMP_UNREACH, f.ip === 4 ? ICMP_PORT_UNREACH : ICMPV6_PORT_UNREACH).body(),
  ];
}
