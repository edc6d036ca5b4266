// The nftables mode's table for one family: every chain, set and map, and every rule that does not depend on which
// Services exist (pure). Two tables named `svcplane`, one per family (ip, ip6), like kube-proxy's `kube-proxy`
// tables; base chains at the priorities kube-proxy's nftables mode made the convention (baseChains.ts).
//
// Every per-Service object is a set or map ELEMENT (fragment.ts); there is no per-Service chain or rule. Two kernel
// facts, measured on 6.18 (bench/, bench/results/), decided this:
//  1. Full sync: rules and chains cost ~10-20 us each to commit, elements a few; per-Service named or anonymous
//     sets grow quadratically. Elements of a few shared maps are the cheapest thing the kernel can hold.
//  2. Incremental sync: adding a rule that holds any expression with a `validate` hook (nat, immediate verdicts,
//     lookups, meta set), or a verdict-map element that jumps, makes the kernel re-validate the whole table at
//     commit, walking every chain reachable from the base chains: ~8 ms at 10k per-Service chains, whatever
//     changed. Data-map and set elements never trigger it. With no per-Service chains the walk covers a handful
//     of chains, so a change costs the same at 1k and 30k Services.
// So endpoint choice is data, not rules:
//   services:   [ip saddr != <cluster CIDR>] ip daddr . meta l4proto . th dport @service-ips -> mark for masquerade
//               the same for @external-ips and NodePorts (always marked);
//               ip daddr . meta l4proto . th dport @service-ips goto pick-ips (and NodePorts -> pick-nodeports)
//   pick-ips:   the endpoint count's rule: slot = numgen random mod N, DNAT to that slot's endpoint (picks.ts).
//   hairpin:    one set of (endpoint . endpoint) pairs, matched in postrouting (a pod reaching itself through
//               its Service must see the node as the source).
//   no endpoints: the port is in the @no-endpoint-services / @no-endpoint-nodeports sets -> reject (TCP reset,
//               ICMP port unreachable), checked at prerouting/output priority -110, before DNAT, for new
//               connections, as kube-proxy does.
//   cluster-ips-check (forward -110, output -90: after DNAT, new connections): what still goes to a ClusterIP
//               is to a port it does not serve -> reject; to an address in a Service CIDR no Service holds -> drop
//               (kube-proxy's "Drop traffic to unallocated ClusterIPs"; Service CIDRs from ServiceCIDR objects).
//   unused ports of a ClusterIP: rejected in forward / output after DNAT (daddr still the ClusterIP).
import type { IPFamily } from '../../../model/types';
import { NFT_REG32_00, NFT_SET_MAP, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_MARK, concatType } from '../netlink/constants';
import { RuleBuilder } from '../netlink/expr';
import { supports } from '../kernel';
import type { DesiredTable, SetSpec } from '../objects';
import { emptyTable } from '../objects';
import { NFTABLES_JUMPS, baseChains } from './baseChains';
import { endpointChecks, rejectRules, unallocatedDrops } from './checks';
import type { NftablesConfig } from './config';
import { firewallAllowSpec } from './firewall';
import { clusterIPMarks, externalPolicyMarks, masqueradeRules } from './masquerade';
import { daddrIn, daddrProtoPort, familyShape, fromOutside, nodePortRules, protoPort } from './match';
import { CHAINS, SETS } from './names';
import { SCRATCH_REG, affinitySetSpec, pickChains } from './picks';

export function skeleton(ipFamily: IPFamily, cfg: NftablesConfig): DesiredTable {
  const f = familyShape(ipFamily);
  const t: DesiredTable = { ...emptyTable(f.nf, cfg.tableName), elements: new Map() };
  const map = (name: string, keyType: number, keyLen: number, dataType: number, dataLen?: number): SetSpec =>
    ({ name, flags: NFT_SET_MAP, keyType, keyLen, dataType, dataLen });
  const set = (name: string, keyType: number, keyLen: number): SetSpec => ({ name, flags: 0, keyType, keyLen });
  const addrProtoPort = concatType(f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
  const protoPortType = concatType(TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
  const endpointType = concatType(f.addrType, TYPE_INET_SERVICE);
  const addrSlot = concatType(f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_MARK);
  const portSlot = concatType(TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_MARK);
  const specs: SetSpec[] = [
    map(SETS.serviceIPs, addrProtoPort, f.addrLen + 8, TYPE_MARK, 4),
    set(SETS.externalIPs, addrProtoPort, f.addrLen + 8),
    map(SETS.serviceNodePorts, protoPortType, 8, TYPE_MARK, 4),
    set(SETS.masqNodePorts, protoPortType, 8),
    map(SETS.serviceEndpoints, addrSlot, f.addrLen + 12, endpointType, f.addrLen + 4),
    map(SETS.nodePortEndpoints, portSlot, 12, endpointType, f.addrLen + 4),
    set(SETS.localPolicyIPs, addrProtoPort, f.addrLen + 8),
    set(SETS.localPolicyNodePorts, protoPortType, 8),
    map(SETS.localIPs, addrProtoPort, f.addrLen + 8, TYPE_MARK, 4),
    map(SETS.localEndpoints, addrSlot, f.addrLen + 12, endpointType, f.addrLen + 4),
    map(SETS.localNodePorts, protoPortType, 8, TYPE_MARK, 4),
    map(SETS.localNodePortEndpoints, portSlot, 12, endpointType, f.addrLen + 4),
    set(SETS.noEndpointServices, addrProtoPort, f.addrLen + 8),
    set(SETS.noEndpointNodePorts, protoPortType, 8),
    set(SETS.dropServices, addrProtoPort, f.addrLen + 8),
    set(SETS.dropExternal, addrProtoPort, f.addrLen + 8),
    set(SETS.dropNodePorts, protoPortType, 8),
    set(SETS.clusterIPs, f.addrType, f.addrLen),
    set(SETS.hairpin, concatType(f.addrType, f.addrType), 2 * f.addrLen),
    set(SETS.firewallIPs, addrProtoPort, f.addrLen + 8),
    firewallAllowSpec(f),
    affinitySetSpec(f, false),
    affinitySetSpec(f, true),
  ];
  // A membership test on a map (the endpoint-count maps: is this a Service port?) has no destination register on
  // kernels that allow it (Linux 6.5, construct map-membership); before that the kernel wants one, and the count
  // goes to a scratch register no rule reads (the same hash lookup plus a 4-byte copy).
  const maps = new Set(specs.filter((x) => x.flags & NFT_SET_MAP).map((x) => x.name));
  const loadsValue = !supports(cfg.kernel, 'map-membership');
  const member = (r: RuleBuilder, set: string) => r.lookup(set, NFT_REG32_00, loadsValue && maps.has(set) ? SCRATCH_REG : undefined);
  const chain = (name: string, rules: Buffer[]) => t.chains.set(name, { name, rules });

  for (const c of baseChains(NFTABLES_JUMPS)) t.chains.set(c.name, c);

  // Marks first (each guarded by a membership test, so only Service traffic is marked: masquerade.ts), then the pick
  // chains, whose rules depend on which endpoint counts are in use (pickChains).
  // externalTrafficPolicy Local keeps the client's source and goes to this node's endpoints (pick-local-*), except
  // for this node's pods and the node itself, which are sent to all endpoints ("short-circuit"; the node's own
  // traffic masqueraded).
  const goto = (r: RuleBuilder, set: string, target: string) => member(r, set).verdict({ kind: 'goto', chain: target }).body();
  chain(CHAINS.services, [
    ...clusterIPMarks(f, cfg),
    ...externalPolicyMarks(f, cfg),
    goto(daddrProtoPort(fromOutside(new RuleBuilder(), f, cfg), f), SETS.localIPs, CHAINS.pickLocalIPs),
    goto(daddrProtoPort(new RuleBuilder(), f), SETS.serviceIPs, CHAINS.pickIPs),
    ...nodePortRules(f, cfg, (r) => goto(protoPort(fromOutside(r, f, cfg)), SETS.localNodePorts, CHAINS.pickLocalNodePorts)),
    ...nodePortRules(f, cfg, (r) => goto(protoPort(r), SETS.serviceNodePorts, CHAINS.pickNodePorts)),
  ]);
  for (const c of pickChains(f, { counts: new Map(), affinity: new Map() })) t.chains.set(c.name, c);
  // Before DNAT (checks.ts; its sets are plain sets, never the count maps, so no membership test needs a register).
  chain(CHAINS.endpointsCheck, endpointChecks(f, cfg));
  chain(CHAINS.clusterIPsCheck, [
    daddrIn(new RuleBuilder(), f, SETS.clusterIPs).verdict({ kind: 'goto', chain: CHAINS.reject }).body(),
    ...unallocatedDrops(f, cfg),
  ]);
  chain(CHAINS.reject, rejectRules(f));
  chain(CHAINS.masquerading, masqueradeRules(f, cfg, true));

  for (const s of specs) {
    t.sets.set(s.name, s);
    t.elements.set(s.name, []);
  }
  return t;
}
