// Model -> nftables objects (pure). Two tables named `svcplane`, one per family (ip, ip6), like kube-proxy's
// `kube-proxy` tables; base chains at the priorities kube-proxy's nftables mode made the convention.
//
// Rule shapes were chosen by measurement (shared notes, kernel 6.18): every per-Service object is a plain chain
// with plain rules, and every lookup goes through one named set/map per table whose elements are the
// per-Service part. Anonymous sets and per-Service named sets make a full sync grow quadratically in the
// kernel; chains, rules and map elements do not. And a Service costs nothing it does not need: no per-Service
// masquerade rule, no per-Service "external" chain, no per-endpoint chain. So:
//   services:        [ip saddr != <cluster CIDR>] ip daddr . meta l4proto . th dport @service-ips  -> mark for masquerade
//                    ip daddr . meta l4proto . th dport vmap @service-ips                        -> goto svc-<port>
//                    ip daddr . meta l4proto . th dport @external-ips -> mark;  ... vmap @external-ips -> goto svc-<port>
//                    fib daddr type local ... meta l4proto . th dport @service-nodeports -> mark; ... vmap -> goto svc-<port>
//                    (a membership test guards each mark, so only Service traffic is ever marked; nat chains only
//                    see a connection's first packet, so the second lookup costs nothing on established flows)
//   svc-<port>:      a cascade picking one endpoint uniformly at random:
//                    numgen random mod N == 0 dnat ep0; numgen random mod N-1 == 0 dnat ep1; ...; dnat ep(N-1)
//                    (P(ep_k) = prod_{j<k} (1 - 1/(N-j)) * 1/(N-k) = 1/N). O(endpoints) per new connection of that
//                    Service, O(1) in the number of Services.
//   hairpin:         one set of (endpoint . endpoint) pairs, matched in postrouting, instead of a per-endpoint
//                    `ip saddr <ep>` rule (which would need a chain per endpoint).
//   no endpoints:    the port is in @no-endpoint-services / @no-endpoint-nodeports -> reject (TCP reset, ICMP
//                    port unreachable), checked at prerouting/output priority -110 (before DNAT) for new
//                    connections, as kube-proxy does.
//   unused ports of a ClusterIP: rejected in forward / output after DNAT (daddr still the ClusterIP).
import { CIDR, cidrContains, ipToBytes, parseCIDR } from '../../model/ip';
import type { IPFamily, Protocol, ServicePort, ServicePortKey } from '../../model/types';
import {
  CT_STATE_NEW, ICMP_PORT_UNREACH, ICMPV6_PORT_UNREACH, IPPROTO, IPS_DST_NAT, NFPROTO_IPV4, NFPROTO_IPV6,
  NFTA_FIB_F_DADDR, NFT_CT_STATE, NFT_CT_STATUS, NFT_DATA_VERDICT, NFT_FIB_RESULT_ADDRTYPE, NFT_GOTO,
  NFT_META_L4PROTO, NFT_META_MARK, NFT_NAT_DNAT, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_REG32_00, NFT_REG_1, NFT_REG_2, NFT_REJECT_ICMP_UNREACH, NFT_REJECT_TCP_RST, NFT_SET_MAP,
  NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, NF_NAT_RANGE_MAP_IPS,
  NF_NAT_RANGE_PROTO_RANDOM_FULLY, NF_NAT_RANGE_PROTO_SPECIFIED, NfFamily, RTN_LOCAL, TYPE_INET_PROTOCOL,
  TYPE_INET_SERVICE, TYPE_IP6ADDR, TYPE_IPADDR, concatType,
} from './netlink/constants';
import { RuleBuilder, be16, hostU32 } from './netlink/expr';
import type { ChainState, ElementState, SetSpec, TableState } from './objects';
import { elementKey, emptyTable } from './objects';

export const TABLE_NAME = 'svcplane';

export interface NftablesConfig {
  /** Table name in both families (tests use others to run side by side). */
  tableName: string;
  /** Pod CIDRs: traffic from outside them to a ClusterIP is masqueraded (kube-proxy's detectLocalMode ClusterCIDR). */
  clusterCIDRs: string[];
  masqueradeAll: boolean;
  /** NodePorts answer on local addresses within these CIDRs; empty: every local address but loopback. */
  nodePortAddresses: string[];
  /** The packet mark bit used to ask for masquerade (kube-proxy: 14, mark 0x4000). */
  masqueradeBit: number;
}

export function defaultConfig(overrides: Partial<NftablesConfig> = {}): NftablesConfig {
  return { tableName: TABLE_NAME, clusterCIDRs: [], masqueradeAll: false, nodePortAddresses: [], masqueradeBit: 14, ...overrides };
}

export const FAMILIES: Array<{ ip: IPFamily; nf: NfFamily }> = [
  { ip: 4, nf: NFPROTO_IPV4 },
  { ip: 6, nf: NFPROTO_IPV6 },
];

export const CHAINS = {
  natPrerouting: 'nat-prerouting',
  natOutput: 'nat-output',
  natPostrouting: 'nat-postrouting',
  filterPrerouting: 'filter-prerouting',
  filterOutput: 'filter-output',
  filterForward: 'filter-forward',
  filterOutputPostDnat: 'filter-output-post-dnat',
  services: 'services',
  masquerading: 'masquerading',
  endpointsCheck: 'endpoints-check',
  clusterIPsCheck: 'cluster-ips-check',
  reject: 'reject-chain',
} as const;

export const SETS = {
  serviceIPs: 'service-ips',
  externalIPs: 'external-ips',
  serviceNodePorts: 'service-nodeports',
  noEndpointServices: 'no-endpoint-services',
  noEndpointNodePorts: 'no-endpoint-nodeports',
  clusterIPs: 'cluster-ips',
  hairpin: 'hairpin-endpoints',
} as const;

interface FamilyShape {
  ip: IPFamily;
  nf: NfFamily;
  addrLen: number;
  saddrOffset: number;
  daddrOffset: number;
  addrType: number;
}

export function familyShape(ip: IPFamily): FamilyShape {
  return ip === 4
    ? { ip, nf: NFPROTO_IPV4, addrLen: 4, saddrOffset: 12, daddrOffset: 16, addrType: TYPE_IPADDR }
    : { ip, nf: NFPROTO_IPV6, addrLen: 16, saddrOffset: 8, daddrOffset: 24, addrType: TYPE_IP6ADDR };
}

/** CIDRs of one family (config is validated before it gets here: unparsable entries are ignored). */
function cidrsOf(list: string[], family: IPFamily): CIDR[] {
  return list.map((c) => parseCIDR(c)).filter((c): c is CIDR => c !== undefined && c.family === family);
}

function prefixMask(prefixLength: number, len: number): Buffer {
  const mask = Buffer.alloc(len);
  for (let i = 0; i < prefixLength; i++) mask[i >> 3] |= 0x80 >> (i & 7);
  return mask;
}

// ---- rule fragments -----------------------------------------------------------------------------------------

const PROTO_NUMBER: Record<Protocol, number> = IPPROTO;

function ctStateNew(r: RuleBuilder): RuleBuilder {
  return r.ctGet(NFT_CT_STATE, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(CT_STATE_NEW), hostU32(0))
    .cmp(NFT_REG_1, 'neq', hostU32(0));
}

/** Loads `daddr . l4proto . dport` into consecutive 32-bit registers from NFT_REG32_00. */
function daddrProtoPort(r: RuleBuilder, f: FamilyShape): RuleBuilder {
  const words = f.addrLen / 4;
  return r.payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
    .metaGet(NFT_META_L4PROTO, NFT_REG32_00 + words)
    .payload(NFT_REG32_00 + words + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
}

/**
 * Rules matching destinations NodePorts answer on (see NftablesConfig.nodePortAddresses): one per CIDR, or one
 * for "every local address but loopback". `finish` appends the rest of each rule and returns its body.
 */
function nodePortRules(f: FamilyShape, cfg: NftablesConfig, finish: (r: RuleBuilder) => Buffer): Buffer[] {
  const local = () => new RuleBuilder().fib(NFT_REG_1, NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_DADDR).cmp(NFT_REG_1, 'eq', hostU32(RTN_LOCAL));
  if (cfg.nodePortAddresses.length === 0) {
    // Every local address but loopback: kube-proxy's nftables mode does not serve NodePorts on localhost.
    const r = local().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen);
    if (f.ip === 4) {
      r.bitwise(NFT_REG_1, NFT_REG_1, Buffer.from([255, 0, 0, 0]), Buffer.alloc(4)).cmp(NFT_REG_1, 'neq', Buffer.from([127, 0, 0, 0]));
    } else {
      r.cmp(NFT_REG_1, 'neq', ipToBytes('::1'));
    }
    return [finish(r)];
  }
  return cidrsOf(cfg.nodePortAddresses, f.ip).map((c) =>
    finish(local().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
      .bitwise(NFT_REG_1, NFT_REG_1, prefixMask(c.prefixLength, f.addrLen), Buffer.alloc(f.addrLen)).cmp(NFT_REG_1, 'eq', c.network)));
}

function protoPortLookup(r: RuleBuilder, set: string): Buffer {
  return r.metaGet(NFT_META_L4PROTO, NFT_REG32_00).payload(NFT_REG32_00 + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
    .lookup(set, NFT_REG32_00, 0).body();
}

function markForMasquerade(r: RuleBuilder, cfg: NftablesConfig): RuleBuilder {
  const bit = 1 << cfg.masqueradeBit;
  return r.metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(~bit), hostU32(bit))
    .metaSet(NFT_META_MARK, NFT_REG_1);
}

// ---- the skeleton: everything that does not depend on Services ---------------------------------------------

export function skeleton(ipFamily: IPFamily, cfg: NftablesConfig): TableState {
  const f = familyShape(ipFamily);
  const t = emptyTable(f.nf, cfg.tableName);
  const chain = (name: string, rules: Buffer[], base?: ChainState['base']) => t.chains.set(name, { name, rules, base });
  const jump = (target: string) => new RuleBuilder().verdict({ kind: 'jump', chain: target }).body();

  chain(CHAINS.natPrerouting, [jump(CHAINS.services)], { type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100 });
  chain(CHAINS.natOutput, [jump(CHAINS.services)], { type: 'nat', hook: NF_INET_LOCAL_OUT, priority: -100 });
  chain(CHAINS.natPostrouting, [jump(CHAINS.masquerading)], { type: 'nat', hook: NF_INET_POST_ROUTING, priority: 100 });
  const newJump = (target: string) => ctStateNew(new RuleBuilder()).verdict({ kind: 'jump', chain: target }).body();
  chain(CHAINS.filterPrerouting, [newJump(CHAINS.endpointsCheck)], { type: 'filter', hook: NF_INET_PRE_ROUTING, priority: -110 });
  chain(CHAINS.filterOutput, [newJump(CHAINS.endpointsCheck)], { type: 'filter', hook: NF_INET_LOCAL_OUT, priority: -110 });
  chain(CHAINS.filterForward, [newJump(CHAINS.clusterIPsCheck)], { type: 'filter', hook: NF_INET_FORWARD, priority: -110 });
  chain(CHAINS.filterOutputPostDnat, [newJump(CHAINS.clusterIPsCheck)], { type: 'filter', hook: NF_INET_LOCAL_OUT, priority: -90 });

  const nodePortVmap = (set: string) => nodePortRules(f, cfg, (r) => protoPortLookup(r, set));
  // Mark-then-dispatch pairs: the first rule of each pair only marks (when its lookup matches), the second
  // dispatches to the Service chain.
  const markIf = (r: RuleBuilder, set: string) => markForMasquerade(r.lookup(set, NFT_REG32_00), cfg).body();
  const clusterIPMark: Buffer[] = [];
  const clusterCIDRs = cidrsOf(cfg.clusterCIDRs, f.ip);
  if (cfg.masqueradeAll) {
    clusterIPMark.push(markIf(daddrProtoPort(new RuleBuilder(), f), SETS.serviceIPs));
  } else if (clusterCIDRs.length > 0) {
    // Off-cluster sources (not from a pod CIDR) are masqueraded so replies come back through this node.
    const r = new RuleBuilder();
    for (const c of clusterCIDRs) {
      r.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen)
        .bitwise(NFT_REG_1, NFT_REG_1, prefixMask(c.prefixLength, f.addrLen), Buffer.alloc(f.addrLen)).cmp(NFT_REG_1, 'neq', c.network);
    }
    clusterIPMark.push(markIf(daddrProtoPort(r, f), SETS.serviceIPs));
  }
  const nodePortMark = nodePortRules(f, cfg, (r) =>
    markIf(r.metaGet(NFT_META_L4PROTO, NFT_REG32_00).payload(NFT_REG32_00 + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2), SETS.serviceNodePorts));
  chain(CHAINS.services, [
    ...clusterIPMark,
    daddrProtoPort(new RuleBuilder(), f).lookup(SETS.serviceIPs, NFT_REG32_00, 0).body(),
    // External traffic (externalIPs, LoadBalancer IPs, NodePorts) is always masqueraded (externalTrafficPolicy Cluster).
    markIf(daddrProtoPort(new RuleBuilder(), f), SETS.externalIPs),
    daddrProtoPort(new RuleBuilder(), f).lookup(SETS.externalIPs, NFT_REG32_00, 0).body(),
    ...nodePortMark,
    ...nodePortVmap(SETS.serviceNodePorts),
  ]);
  chain(CHAINS.endpointsCheck, [
    daddrProtoPort(new RuleBuilder(), f).lookup(SETS.noEndpointServices, NFT_REG32_00, 0).body(),
    ...nodePortVmap(SETS.noEndpointNodePorts),
  ]);
  chain(CHAINS.clusterIPsCheck, [
    new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
      .lookup(SETS.clusterIPs, NFT_REG_1).verdict({ kind: 'goto', chain: CHAINS.reject }).body(),
  ]);
  chain(CHAINS.reject, [
    new RuleBuilder().metaGet(NFT_META_L4PROTO, NFT_REG_1).cmp(NFT_REG_1, 'eq', Buffer.from([IPPROTO.TCP]))
      .reject(NFT_REJECT_TCP_RST).body(),
    new RuleBuilder().reject(NFT_REJECT_ICMP_UNREACH, f.ip === 4 ? ICMP_PORT_UNREACH : ICMPV6_PORT_UNREACH).body(),
  ]);

  const bit = 1 << cfg.masqueradeBit;
  const words = f.addrLen / 4;
  chain(CHAINS.masquerading, [
    // Marked by a Service chain: clear the mark (it must not leak into routing decisions) and masquerade.
    new RuleBuilder().metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(bit), hostU32(0))
      .cmp(NFT_REG_1, 'neq', hostU32(0))
      .metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(~bit), hostU32(0))
      .metaSet(NFT_META_MARK, NFT_REG_1)
      .masquerade(NF_NAT_RANGE_PROTO_RANDOM_FULLY).body(),
    // Hairpin: an endpoint reaching itself through its Service must see the node as the source, or its
    // reply would go straight back to itself and never be un-DNATed.
    new RuleBuilder().ctGet(NFT_CT_STATUS, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(IPS_DST_NAT), hostU32(0))
      .cmp(NFT_REG_1, 'neq', hostU32(0))
      .payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen)
      .payload(NFT_REG32_00 + words, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
      .lookup(SETS.hairpin, NFT_REG32_00)
      .masquerade(NF_NAT_RANGE_PROTO_RANDOM_FULLY).body(),
  ]);

  const vmap = (name: string, keyType: number, keyLen: number): SetSpec =>
    ({ name, flags: NFT_SET_MAP, keyType, keyLen, dataType: NFT_DATA_VERDICT });
  const addrProtoPort = concatType(f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
  const protoPort = concatType(TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
  for (const s of [
    vmap(SETS.serviceIPs, addrProtoPort, f.addrLen + 8),
    vmap(SETS.externalIPs, addrProtoPort, f.addrLen + 8),
    vmap(SETS.serviceNodePorts, protoPort, 8),
    vmap(SETS.noEndpointServices, addrProtoPort, f.addrLen + 8),
    vmap(SETS.noEndpointNodePorts, protoPort, 8),
    { name: SETS.clusterIPs, flags: 0, keyType: f.addrType, keyLen: f.addrLen },
    { name: SETS.hairpin, flags: 0, keyType: concatType(f.addrType, f.addrType), keyLen: 2 * f.addrLen },
  ]) {
    t.sets.set(s.name, s);
    t.elements.set(s.name, new Map());
  }
  return t;
}

// ---- per Service port ---------------------------------------------------------------------------------------

export interface FragmentElement {
  set: string;
  element: ElementState;
}

/** What one Service port contributes to one family's table. */
export interface Fragment {
  chains: ChainState[];
  elements: FragmentElement[];
}

function portSuffix(sp: ServicePort): string {
  return `${sp.namespace}/${sp.name}/${sp.protocol.toLowerCase()}/${sp.portName || sp.port}`;
}

export function serviceChainName(sp: ServicePort): string {
  return `svc-${portSuffix(sp)}`;
}


// Endpoint and Service addresses repeat across Services and syncs: parse each once.
const ipCache = new Map<string, Buffer>();
function ipBytes(ip: string): Buffer {
  let b = ipCache.get(ip);
  if (!b) {
    if (ipCache.size > 1_000_000) ipCache.clear();
    ipCache.set(ip, (b = ipToBytes(ip)));
  }
  return b;
}

const U32_ZERO = hostU32(0);

function addrProtoPortKey(ip: string, proto: number, port: number): Buffer {
  const addr = ipBytes(ip);
  const key = Buffer.alloc(addr.length + 8);
  addr.copy(key, 0);
  key[addr.length] = proto;
  key.writeUInt16BE(port, addr.length + 4);
  return key;
}

function protoPortKey(proto: number, port: number): Buffer {
  const key = Buffer.alloc(8);
  key[0] = proto;
  key.writeUInt16BE(port, 4);
  return key;
}

const goto = (chain: string): Pick<ElementState, 'verdict' | 'chain'> => ({ verdict: NFT_GOTO, chain });

function ofFamily(ips: string[], family: IPFamily): string[] {
  return ips.filter((ip) => (ip.includes(':') ? 6 : 4) === family);
}

/**
 * The fragment of one Service port for one family, or undefined when the Service has no address of that
 * family (a single-stack Service only lives in its own family's table, NodePorts included).
 */
export function fragmentFor(sp: ServicePort, ipFamily: IPFamily, _cfg: NftablesConfig): Fragment | undefined {
  const f = familyShape(ipFamily);
  const clusterIPs = ofFamily(sp.clusterIPs, ipFamily);
  if (clusterIPs.length === 0) return undefined;
  const externalIPs = [...ofFamily(sp.externalIPs, ipFamily), ...ofFamily(sp.loadBalancerIPs, ipFamily)];
  const proto = PROTO_NUMBER[sp.protocol];
  const endpoints = sp.endpoints.filter((e) => e.family === ipFamily);
  const frag: Fragment = { chains: [], elements: [] };
  for (const ip of clusterIPs) frag.elements.push({ set: SETS.clusterIPs, element: { key: ipBytes(ip) } });

  if (endpoints.length === 0) {
    const reject = goto(CHAINS.reject);
    for (const ip of [...clusterIPs, ...externalIPs])
      frag.elements.push({ set: SETS.noEndpointServices, element: { key: addrProtoPortKey(ip, proto, sp.port), ...reject } });
    if (sp.nodePort) frag.elements.push({ set: SETS.noEndpointNodePorts, element: { key: protoPortKey(proto, sp.nodePort), ...reject } });
    return frag;
  }

  const svcChain = serviceChainName(sp);
  const rules: Buffer[] = [];
  const n = endpoints.length;
  endpoints.forEach((ep, k) => {
    const r = new RuleBuilder();
    if (k < n - 1) r.numgenRandom(NFT_REG_1, n - k).cmp(NFT_REG_1, 'eq', U32_ZERO);
    const epBytes = ipBytes(ep.address);
    r.immediateData(NFT_REG_1, epBytes).immediateData(NFT_REG_2, be16(ep.port))
      .nat(NFT_NAT_DNAT, f.nf, NFT_REG_1, NFT_REG_2, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED);
    rules.push(r.body());
    frag.elements.push({ set: SETS.hairpin, element: { key: Buffer.concat([epBytes, epBytes]) } });
  });
  frag.chains.push({ name: svcChain, rules });
  const target = goto(svcChain);
  for (const ip of clusterIPs)
    frag.elements.push({ set: SETS.serviceIPs, element: { key: addrProtoPortKey(ip, proto, sp.port), ...target } });
  for (const ip of externalIPs)
    frag.elements.push({ set: SETS.externalIPs, element: { key: addrProtoPortKey(ip, proto, sp.port), ...target } });
  if (sp.nodePort) frag.elements.push({ set: SETS.serviceNodePorts, element: { key: protoPortKey(proto, sp.nodePort), ...target } });
  return frag;
}

/** Whether an address is one the node answers NodePorts on, for status output. */
export function nodePortAddressAllowed(ip: string, cfg: NftablesConfig): boolean {
  return cfg.nodePortAddresses.length === 0 || cfg.nodePortAddresses.some((c) => cidrContains(c, ip));
}

export type FragmentsByKey = Map<ServicePortKey, Map<NfFamily, Fragment>>;

export function fragmentsOf(sp: ServicePort, cfg: NftablesConfig): Map<NfFamily, Fragment> {
  const out = new Map<NfFamily, Fragment>();
  for (const fam of FAMILIES) {
    const frag = fragmentFor(sp, fam.ip, cfg);
    if (frag) out.set(fam.nf, frag);
  }
  return out;
}

export { elementKey };
