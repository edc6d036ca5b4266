// The nftables table beside IPVS (pure): what kube-proxy's IPVS mode keeps in iptables and ipset, in one svcplane
// table per family, so IPVS mode needs neither (pkg/proxy/ipvs/proxier.go, writeIptablesRules, is the model).
// IPVS itself does the DNAT (at LOCAL_IN / LOCAL_OUT); this table only marks, masquerades and filters:
//
//   services (nat prerouting/output, -100): the masquerade mark, as in nftables mode: ClusterIP traffic from
//       outside the cluster CIDRs (or all of it with masqueradeAll; with neither, traffic whose source is a Service
//       address: the host picks a svcplane0 address as source when it talks to one), externalIPs, LoadBalancer IPs
//       and NodePorts always. Loopback sources are left alone (kube-proxy: "dismiss connects to localhost early").
//   masquerading (nat postrouting, 100): marked -> masquerade; hairpin (a pod reaching itself through its Service:
//       after IPVS's DNAT source and destination are the same endpoint) -> masquerade. IPVS forwards through
//       LOCAL_OUT and POST_ROUTING, and with net.ipv4.vs.conntrack=1 the connection's conntrack entry carries the
//       NAT, so nf_nat's masquerade applies to IPVS traffic (what kube-proxy relies on too).
//   filter-output (filter output, -110: before IPVS, which takes the node's own connections at LOCAL_OUT, -99):
//       loadBalancerSourceRanges for the node's own new connections to LB IPs; then cluster-ips-check.
//   filter-forward (filter forward, -110) -> cluster-ips-check, new connections: an address inside a Service CIDR
//       that is not a ClusterIP is dropped (kube-proxy's nftables mode does this; its IPVS mode lets such traffic
//       follow the node's routes out; svcplane drops it in both modes). ClusterIPs are local on svcplane0, so
//       Service traffic never takes the forward path; the node's own passes output, where ClusterIPs return first.
//   filter-input (filter input, 0: before IPVS, which hooks LOCAL_IN at 98), new connections only:
//       a Service port without endpoints is rejected (TCP reset, ICMP port unreachable): kube-proxy leaves it to
//       IPVS, which answers with ICMP for TCP too; svcplane refuses the way its nftables mode does.
//       An address svcplane bound on svcplane0, on a port no Service uses, is rejected: without it the node's own
//       daemons (sshd on 0.0.0.0:22 ...) would answer on every ClusterIP (kube-proxy's KUBE-IPVS-FILTER).
//
// Every per-Service object is an element of a plain set, so a sync is element operations only (no rule re-validation,
// see ruleset.ts); several Service ports can want one element (a bound address, a hairpin pair), so elements are
// reference-counted by IpvsNftables.
import type { IPFamily, ServicePort } from '../../model/types';
import {
  IPPROTO, NFT_META_L4PROTO, NFT_META_MARK, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00, NFT_REG_1, NFT_REJECT_ICMP_UNREACH,
  NFT_REJECT_TCP_RST, NF_INET_FORWARD, NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, NF_NAT_RANGE_PROTO_RANDOM_FULLY,
  ICMP_PORT_UNREACH, ICMPV6_PORT_UNREACH, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, concatType,
} from '../nftables/netlink/constants';
import { RuleBuilder, hostU32 } from '../nftables/netlink/expr';
import type { ChainState, DesiredTable, SetSpec } from '../nftables/objects';
import { emptyTable } from '../nftables/objects';
import {
  type FamilyShape, type NftablesConfig, SETS, addrProtoPortKey, canTellPods, firewallAllowSpec, firewallElements, firewallRanges, firewallRule, ctStateNew, daddrProtoPort, familyShape, fromNode, markForMasquerade,
  needsHairpin, nodePortRules, notFromPods, ofFamily, pairBytes, protoPort, protoPortKey, unallocatedDrops, zeroed,
} from '../nftables/ruleset';
import { ipToBytes } from '../../model/ip';
import { choiceReasons, chooseEndpoints } from '../../model/topology';


export const IPVS_CHAINS = {
  natPrerouting: 'nat-prerouting',
  natOutput: 'nat-output',
  natPostrouting: 'nat-postrouting',
  filterInput: 'filter-input',
  filterOutput: 'filter-output',
  filterForward: 'filter-forward',
  services: 'services',
  masquerading: 'masquerading',
  inputCheck: 'input-check',
  outputCheck: 'output-check',
  clusterIPsCheck: 'cluster-ips-check',
  reject: 'reject-chain',
} as const;

export const IPVS_SETS = {
  /** address . proto . port of every virtual service on a Service address (ClusterIP, externalIP, LB IP). */
  serviceIPs: 'service-ips',
  /** ClusterIP addresses (their masquerade rule looks at the address alone). */
  clusterIPs: 'cluster-ips',
  /** externalIPs / LB IPs of externalTrafficPolicy Cluster: always masqueraded. */
  externalIPs: 'external-ips',
  /** NodePorts (proto . port) of externalTrafficPolicy Cluster: always masqueraded. */
  masqNodePorts: 'masq-nodeports',
  /** externalTrafficPolicy Local: masqueraded only when the node itself is the client; sources kept otherwise. */
  localPolicyIPs: 'local-policy-ips',
  localPolicyNodePorts: 'local-policy-nodeports',
  noEndpointServices: 'no-endpoint-services',
  noEndpointNodePorts: 'no-endpoint-nodeports',
  /** Endpoints elsewhere, none here, under a Local policy: dropped (external ones: for clients from outside). */
  dropServices: 'drop-services',
  dropExternal: 'drop-external',
  dropNodePorts: 'drop-nodeports',
  /** loadBalancerSourceRanges, as in the nftables mode (ruleset.ts): LB IPs and the source ranges they accept. */
  firewallIPs: SETS.firewallIPs,
  firewallAllow: SETS.firewallAllow,
  /** Addresses svcplane binds on svcplane0: on them, only Service ports are answered. */
  boundAddresses: 'service-addresses',
  hairpin: 'hairpin-endpoints',
} as const;

const PROTO: Record<string, number> = IPPROTO;

/** The table for one family: chains and empty sets (elements come from elementsOf). */
export function ipvsSkeleton(ip: IPFamily, cfg: NftablesConfig): DesiredTable {
  const f = familyShape(ip);
  const t: DesiredTable = { ...emptyTable(f.nf, cfg.tableName), elements: new Map() };
  const chain = (name: string, rules: Buffer[], base?: ChainState['base']) => t.chains.set(name, { name, rules, base });
  const jump = (target: string) => new RuleBuilder().verdict({ kind: 'jump', chain: target }).body();

  chain(IPVS_CHAINS.natPrerouting, [jump(IPVS_CHAINS.services)], { type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100 });
  chain(IPVS_CHAINS.natOutput, [jump(IPVS_CHAINS.services)], { type: 'nat', hook: NF_INET_LOCAL_OUT, priority: -100 });
  chain(IPVS_CHAINS.natPostrouting, [jump(IPVS_CHAINS.masquerading)], { type: 'nat', hook: NF_INET_POST_ROUTING, priority: 100 });
  chain(IPVS_CHAINS.filterInput, [ctStateNew(new RuleBuilder()).verdict({ kind: 'jump', chain: IPVS_CHAINS.inputCheck }).body()],
    { type: 'filter', hook: NF_INET_LOCAL_IN, priority: 0 });
  // The node's own new connections to a firewalled LB IP: IPVS takes them at LOCAL_OUT (priority -99) straight to a
  // real server, so they never pass filter-input; checked here first (kube-proxy's IPVS mode drops them through
  // KUBE-LOAD-BALANCER-FW in its nat OUTPUT chain).
  const newJump = (target: string) => ctStateNew(new RuleBuilder()).verdict({ kind: 'jump', chain: target }).body();
  chain(IPVS_CHAINS.filterOutput, [newJump(IPVS_CHAINS.outputCheck), newJump(IPVS_CHAINS.clusterIPsCheck)],
    { type: 'filter', hook: NF_INET_LOCAL_OUT, priority: -110 });
  chain(IPVS_CHAINS.filterForward, [newJump(IPVS_CHAINS.clusterIPsCheck)], { type: 'filter', hook: NF_INET_FORWARD, priority: -110 });
  chain(IPVS_CHAINS.outputCheck, [firewallRule(f)]);
  chain(IPVS_CHAINS.clusterIPsCheck, [
    new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen).lookup(IPVS_SETS.clusterIPs, NFT_REG_1)
      .verdict({ kind: 'return' }).body(),
    ...unallocatedDrops(f, cfg),
  ]);

  const markIf = (r: RuleBuilder, set: string) => markForMasquerade(r.lookup(set, NFT_REG32_00), cfg).body();
  const toClusterIP = (r: RuleBuilder) => r.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen).lookup(IPVS_SETS.clusterIPs, NFT_REG_1);
  const services: Buffer[] = [loopbackReturn(f)];
  if (cfg.masqueradeAll) {
    services.push(markForMasquerade(toClusterIP(new RuleBuilder()), cfg).body());
  } else if (canTellPods(f, cfg)) {
    services.push(markForMasquerade(toClusterIP(notFromPods(new RuleBuilder(), f, cfg)), cfg).body());
  } else {
    // No way to tell pods from the rest: mark what the host itself sends from a Service address (kube-proxy's
    // "src,dst" match on KUBE-CLUSTER-IP), whose replies would otherwise go to svcplane0.
    const words = f.addrLen / 4;
    services.push(markIf(new RuleBuilder().payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen)
      .metaGet(NFT_META_L4PROTO, NFT_REG32_00 + words).payload(NFT_REG32_00 + words + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2), IPVS_SETS.serviceIPs));
  }
  services.push(markIf(daddrProtoPort(new RuleBuilder(), f), IPVS_SETS.externalIPs));
  services.push(markIf(daddrProtoPort(fromNode(new RuleBuilder(), true), f), IPVS_SETS.localPolicyIPs));
  services.push(...nodePortRules(f, cfg, (r) => markIf(protoPort(r), IPVS_SETS.masqNodePorts)));
  services.push(...nodePortRules(f, cfg, (r) => markIf(protoPort(fromNode(r, true)), IPVS_SETS.localPolicyNodePorts)));
  chain(IPVS_CHAINS.services, services);

  const bit = 1 << cfg.masqueradeBit;
  chain(IPVS_CHAINS.masquerading, [
    new RuleBuilder().metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(bit), hostU32(0))
      .cmp(NFT_REG_1, 'neq', hostU32(0))
      .metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(~bit), hostU32(0))
      .metaSet(NFT_META_MARK, NFT_REG_1)
      .masquerade(NF_NAT_RANGE_PROTO_RANDOM_FULLY).body(),
    new RuleBuilder().payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen)
      .payload(NFT_REG32_00 + f.addrLen / 4, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
      .lookup(IPVS_SETS.hairpin, NFT_REG32_00)
      .masquerade(NF_NAT_RANGE_PROTO_RANDOM_FULLY).body(),
  ]);

  const goto = (r: RuleBuilder, set: string, target: string) => r.lookup(set, NFT_REG32_00).verdict({ kind: 'goto', chain: target }).body();
  const drop = (r: RuleBuilder, set: string) => r.lookup(set, NFT_REG32_00).verdict({ kind: 'drop' }).body();
  const outside = (r: RuleBuilder) => fromNode(notFromPods(r, f, cfg), false);
  chain(IPVS_CHAINS.inputCheck, [
    firewallRule(f),
    goto(daddrProtoPort(new RuleBuilder(), f), IPVS_SETS.noEndpointServices, IPVS_CHAINS.reject),
    ...nodePortRules(f, cfg, (r) => goto(protoPort(r), IPVS_SETS.noEndpointNodePorts, IPVS_CHAINS.reject)),
    drop(daddrProtoPort(new RuleBuilder(), f), IPVS_SETS.dropServices),
    drop(daddrProtoPort(outside(new RuleBuilder()), f), IPVS_SETS.dropExternal),
    ...nodePortRules(f, cfg, (r) => drop(protoPort(outside(r)), IPVS_SETS.dropNodePorts)),
    // A bound address on a port no virtual service has (ICMP too: kube-proxy rejects everything new but Service ports).
    daddrProtoPort(new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen).lookup(IPVS_SETS.boundAddresses, NFT_REG_1), f)
      .lookup(IPVS_SETS.serviceIPs, NFT_REG32_00, undefined, true).verdict({ kind: 'goto', chain: IPVS_CHAINS.reject }).body(),
  ]);
  chain(IPVS_CHAINS.reject, [
    new RuleBuilder().metaGet(NFT_META_L4PROTO, NFT_REG_1).cmp(NFT_REG_1, 'eq', Buffer.from([IPPROTO.TCP])).reject(NFT_REJECT_TCP_RST).body(),
    new RuleBuilder().reject(NFT_REJECT_ICMP_UNREACH, f.ip === 4 ? ICMP_PORT_UNREACH : ICMPV6_PORT_UNREACH).body(),
  ]);

  const set = (name: string, keyType: number, keyLen: number): SetSpec => ({ name, flags: 0, keyType, keyLen });
  const addrProtoPort = concatType(f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
  const protoPortType = concatType(TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
  for (const s of [
    set(IPVS_SETS.serviceIPs, addrProtoPort, f.addrLen + 8),
    set(IPVS_SETS.clusterIPs, f.addrType, f.addrLen),
    set(IPVS_SETS.externalIPs, addrProtoPort, f.addrLen + 8),
    set(IPVS_SETS.masqNodePorts, protoPortType, 8),
    set(IPVS_SETS.localPolicyIPs, addrProtoPort, f.addrLen + 8),
    set(IPVS_SETS.localPolicyNodePorts, protoPortType, 8),
    set(IPVS_SETS.noEndpointServices, addrProtoPort, f.addrLen + 8),
    set(IPVS_SETS.noEndpointNodePorts, protoPortType, 8),
    set(IPVS_SETS.dropServices, addrProtoPort, f.addrLen + 8),
    set(IPVS_SETS.dropExternal, addrProtoPort, f.addrLen + 8),
    set(IPVS_SETS.dropNodePorts, protoPortType, 8),
    set(IPVS_SETS.boundAddresses, f.addrType, f.addrLen),
    set(IPVS_SETS.firewallIPs, addrProtoPort, f.addrLen + 8),
    firewallAllowSpec(f),
    set(IPVS_SETS.hairpin, concatType(f.addrType, f.addrType), 2 * f.addrLen),
  ]) {
    t.sets.set(s.name, s);
    t.elements.set(s.name, []);
  }
  return t;
}

/** `ip saddr 127.0.0.0/8 return` (`ip6 saddr ::1 return`). */
function loopbackReturn(f: FamilyShape): Buffer {
  const r = new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen);
  if (f.ip === 4) r.bitwise(NFT_REG_1, NFT_REG_1, Buffer.from([255, 0, 0, 0]), zeroed(4)).cmp(NFT_REG_1, 'eq', Buffer.from([127, 0, 0, 0]));
  else r.cmp(NFT_REG_1, 'eq', ipToBytes('::1'));
  return r.verdict({ kind: 'return' }).body();
}

/** One element of this table: its set and key bytes (and the end of a range). */
export interface FilterElement {
  set: string;
  key: Buffer;
  keyEnd?: Buffer;
  /** service-ips only: the Service port and why its real servers are these (explain reads it from the kernel). */
  comment?: string;
}

/**
 * What one Service port adds to one family's table. `bound(ip)` says whether svcplane binds that address on
 * svcplane0 (externalIPs and LB IPs that are already local elsewhere are not bound, as in kube-proxy).
 */
export function elementsOf(sp: ServicePort, ip: IPFamily, cfg: NftablesConfig, bound: (address: string) => boolean): FilterElement[] {
  const v6 = ip === 6;
  const ofIP = (a: string) => a.includes(':') === v6;
  // Fast way out for the other family of a single-stack Service (most of them): no copies, no sets.
  if (!sp.clusterIPs.some(ofIP) && !sp.externalIPs.some(ofIP) && !sp.loadBalancerIPs.some(ofIP)) return [];
  const clusterIPs = ofFamily(sp.clusterIPs, ip);
  const externals = sp.externalIPs.length || sp.loadBalancerIPs.length ? ofFamily([...sp.externalIPs, ...sp.loadBalancerIPs], ip, clusterIPs) : [];
  const proto = PROTO[sp.protocol];
  const choice = chooseEndpoints(sp, ip, { name: cfg.nodeName, zone: cfg.nodeZone });
  const out: FilterElement[] = [];
  // A NodePort lives in the families of the Service's ClusterIPs (a single-stack Service in one).
  const inFamily = clusterIPs.length > 0;
  const node = { name: cfg.nodeName, zone: cfg.nodeZone };
  /** The Service port and why the virtual service's real servers are these (as the nftables mode's counts say). */
  const why = (external: boolean) => {
    const local = external ? choice.externalLocal : sp.internalTrafficPolicy === 'Local';
    const r = choiceReasons(choice, local ? 'local' : 'cluster', node);
    // IPVS has one real-server list per address: eTP Local with no local endpoint keeps them all for the node's
    // pods (the nftables table drops the rest), as kube-proxy's IPVS mode does.
    if (local && external && choice.local.length === 0 && choice.hasAny) r.splice(0, r.length, 'no endpoint here: every endpoint, for pods only');
    if (sp.endpointWeights) r.push('weighted');
    return r.length ? `${sp.key} (${r.join('; ')})` : sp.key;
  };
  const address = (a: string, external: boolean) => {
    const key = addrProtoPortKey(a, proto, sp.port);
    const addr = key.subarray(0, v6 ? 16 : 4);
    out.push({ set: IPVS_SETS.serviceIPs, key, comment: why(external) });
    if (external && sp.loadBalancerIPs.includes(a)) out.push(...firewallElements(key, firewallRanges(sp, ip, cfg.nodeIPs), ip));
    if (bound(a)) out.push({ set: IPVS_SETS.boundAddresses, key: addr });
    if (!choice.hasAny) out.push({ set: IPVS_SETS.noEndpointServices, key });
    if (!external) {
      out.push({ set: IPVS_SETS.clusterIPs, key: addr });
      if (choice.hasAny && choice.internal.length === 0) out.push({ set: IPVS_SETS.dropServices, key });
    } else if (!choice.externalLocal) {
      out.push({ set: IPVS_SETS.externalIPs, key });
    } else {
      out.push({ set: IPVS_SETS.localPolicyIPs, key });
      if (choice.hasAny && choice.local.length === 0) out.push({ set: IPVS_SETS.dropExternal, key });
    }
  };
  for (const a of clusterIPs) address(a, false);
  for (const a of externals) address(a, true);
  if (sp.nodePort && inFamily) {
    const key = protoPortKey(proto, sp.nodePort);
    if (!choice.hasAny) out.push({ set: IPVS_SETS.noEndpointNodePorts, key });
    // The NodePort's policy element carries the comment (one per NodePort, like service-ips per address).
    if (!choice.externalLocal) out.push({ set: IPVS_SETS.masqNodePorts, key, comment: why(true) });
    else {
      out.push({ set: IPVS_SETS.localPolicyNodePorts, key, comment: why(true) });
      if (choice.hasAny && choice.local.length === 0) out.push({ set: IPVS_SETS.dropNodePorts, key });
    }
  }
  const hairpins = new Set<string>();
  for (const e of [...choice.cluster, ...choice.local]) {
    if (hairpins.has(e.address) || !needsHairpin(cfg.nodeName, e.nodeName)) continue;
    hairpins.add(e.address);
    out.push({ set: IPVS_SETS.hairpin, key: pairBytes(e.address) });
  }
  return out;
}
