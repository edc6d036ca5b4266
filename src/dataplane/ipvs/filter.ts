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
// see rules/skeleton.ts); several Service ports can want one element (a bound address, a hairpin pair), so elements
// are reference-counted by IpvsNftables. The chains are built from the nftables mode's rule library (rules/README.md).
import type { IPFamily, ServicePort } from '../../model/types';
import { choiceReasons, chooseEndpoints } from '../../model/topology';
import { NFT_META_L4PROTO, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, concatType } from '../nftables/netlink/constants';
import { RuleBuilder } from '../nftables/netlink/expr';
import type { DesiredTable, SetSpec } from '../nftables/objects';
import { emptyTable } from '../nftables/objects';
import { BASE_CHAINS, type Jump, baseChains } from '../nftables/rules/baseChains';
import { endpointChecks, rejectRules, unallocatedDrops } from '../nftables/rules/checks';
import type { NftablesConfig } from '../nftables/rules/config';
import { firewallAllowSpec, firewallElements, firewallRanges, firewallRule } from '../nftables/rules/firewall';
import { needsHairpin, ofFamily } from '../nftables/rules/fragment';
import { PROTO_NUMBER, addrProtoPortKey, pairBytes, protoPortKey } from '../nftables/rules/keys';
import { clusterIPMarks, externalPolicyMarks, markForMasquerade, masqueradeRules } from '../nftables/rules/masquerade';
import { type FamilyShape, canTellPods, daddrIn, daddrProtoPort, familyShape, loopback } from '../nftables/rules/match';
import { CHAINS, SETS } from '../nftables/rules/names';

// Names as in the nftables mode's table (rules/names.ts) where the object is the same, plus this table's own.
export const IPVS_CHAINS = {
  natPrerouting: CHAINS.natPrerouting,
  natOutput: CHAINS.natOutput,
  natPostrouting: CHAINS.natPostrouting,
  filterInput: CHAINS.filterInput,
  filterOutput: CHAINS.filterOutput,
  filterForward: CHAINS.filterForward,
  services: CHAINS.services,
  masquerading: CHAINS.masquerading,
  inputCheck: 'input-check',
  outputCheck: 'output-check',
  clusterIPsCheck: CHAINS.clusterIPsCheck,
  reject: CHAINS.reject,
} as const;

export const IPVS_SETS = {
  /** address . proto . port of every virtual service on a Service address (ClusterIP, externalIP, LB IP). */
  serviceIPs: SETS.serviceIPs,
  /** ClusterIP addresses (their masquerade rule looks at the address alone). */
  clusterIPs: SETS.clusterIPs,
  /** externalIPs / LB IPs of externalTrafficPolicy Cluster: always masqueraded. */
  externalIPs: SETS.externalIPs,
  /** NodePorts (proto . port) of externalTrafficPolicy Cluster: always masqueraded. */
  masqNodePorts: SETS.masqNodePorts,
  /** externalTrafficPolicy Local: masqueraded only when the node itself is the client; sources kept otherwise. */
  localPolicyIPs: SETS.localPolicyIPs,
  localPolicyNodePorts: SETS.localPolicyNodePorts,
  noEndpointServices: SETS.noEndpointServices,
  noEndpointNodePorts: SETS.noEndpointNodePorts,
  /** Endpoints elsewhere, none here, under a Local policy: dropped (external ones: for clients from outside). */
  dropServices: SETS.dropServices,
  dropExternal: SETS.dropExternal,
  dropNodePorts: SETS.dropNodePorts,
  /** loadBalancerSourceRanges, as in the nftables mode (rules/firewall.ts): LB IPs and the sources they accept. */
  firewallIPs: SETS.firewallIPs,
  firewallAllow: SETS.firewallAllow,
  /** Addresses svcplane binds on svcplane0: on them, only Service ports are answered. */
  boundAddresses: 'service-addresses',
  hairpin: SETS.hairpin,
} as const;

/** This table's prologue (the base chains and priorities are the nftables mode's: rules/baseChains.ts). */
export const IPVS_JUMPS: readonly Jump[] = [
  { from: BASE_CHAINS.natPrerouting, to: IPVS_CHAINS.services, newOnly: false },
  { from: BASE_CHAINS.natOutput, to: IPVS_CHAINS.services, newOnly: false },
  { from: BASE_CHAINS.natPostrouting, to: IPVS_CHAINS.masquerading, newOnly: false },
  { from: BASE_CHAINS.filterInput, to: IPVS_CHAINS.inputCheck, newOnly: true },
  // The node's own new connections to a firewalled LB IP: IPVS takes them at LOCAL_OUT (priority -99) straight to a
  // real server, so they never pass filter-input; checked here first (kube-proxy's IPVS mode drops them through
  // KUBE-LOAD-BALANCER-FW in its nat OUTPUT chain).
  { from: BASE_CHAINS.filterOutput, to: IPVS_CHAINS.outputCheck, newOnly: true },
  { from: BASE_CHAINS.filterOutput, to: IPVS_CHAINS.clusterIPsCheck, newOnly: true },
  { from: BASE_CHAINS.filterForward, to: IPVS_CHAINS.clusterIPsCheck, newOnly: true },
];

/** The table for one family: chains and empty sets (elements come from elementsOf). */
export function ipvsSkeleton(ip: IPFamily, cfg: NftablesConfig): DesiredTable {
  const f = familyShape(ip);
  const t: DesiredTable = { ...emptyTable(f.nf, cfg.tableName), elements: new Map() };
  const chain = (name: string, rules: Buffer[]) => t.chains.set(name, { name, rules });

  for (const c of baseChains(IPVS_JUMPS)) t.chains.set(c.name, c);
  chain(IPVS_CHAINS.outputCheck, [firewallRule(f)]);
  chain(IPVS_CHAINS.clusterIPsCheck, [
    daddrIn(new RuleBuilder(), f, IPVS_SETS.clusterIPs).verdict({ kind: 'return' }).body(),
    ...unallocatedDrops(f, cfg),
  ]);

  // The masquerade marks are the nftables mode's (rules/masquerade.ts), after a way out for loopback sources.
  const services: Buffer[] = [loopbackReturn(f)];
  if (cfg.masqueradeAll || canTellPods(f, cfg)) {
    services.push(...clusterIPMarks(f, cfg));
  } else {
    // No way to tell pods from the rest: mark what the host itself sends from a Service address (kube-proxy's
    // "src,dst" match on KUBE-CLUSTER-IP), whose replies would otherwise go to svcplane0.
    const words = f.addrLen / 4;
    services.push(markForMasquerade(new RuleBuilder().payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen)
      .metaGet(NFT_META_L4PROTO, NFT_REG32_00 + words).payload(NFT_REG32_00 + words + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
      .lookup(IPVS_SETS.serviceIPs, NFT_REG32_00), cfg).body());
  }
  services.push(...externalPolicyMarks(f, cfg));
  chain(IPVS_CHAINS.services, services);
  chain(IPVS_CHAINS.masquerading, masqueradeRules(f, cfg, false));

  chain(IPVS_CHAINS.inputCheck, [
    // The nftables mode's endpoints-check (rules/checks.ts): source ranges, no endpoints, Local policy drops.
    ...endpointChecks(f, cfg),
    // A bound address on a port no virtual service has (ICMP too: kube-proxy rejects everything new but Service ports).
    daddrProtoPort(daddrIn(new RuleBuilder(), f, IPVS_SETS.boundAddresses), f)
      .lookup(IPVS_SETS.serviceIPs, NFT_REG32_00, undefined, true).verdict({ kind: 'goto', chain: IPVS_CHAINS.reject }).body(),
  ]);
  chain(IPVS_CHAINS.reject, rejectRules(f));

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
  return loopback(new RuleBuilder(), f, f.saddrOffset, true).verdict({ kind: 'return' }).body();
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
  const proto = PROTO_NUMBER[sp.protocol];
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
