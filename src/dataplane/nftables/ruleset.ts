// Model -> nftables objects (pure). Two tables named `svcplane`, one per family (ip, ip6), like kube-proxy's
// `kube-proxy` tables; base chains at the priorities kube-proxy's nftables mode made the convention.
//
// Every per-Service object is a set or map ELEMENT; there is no per-Service chain or rule. Two kernel facts,
// measured on 6.18 (bench/ and ../shared/notes), decided this:
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
//               ip daddr . meta l4proto . th dport @service-ips goto dispatch-ips (and NodePorts -> dispatch-nodeports)
//   dispatch-ips: for N = 1, 2, ...:  ip daddr . meta l4proto . th dport map @service-ips == N  goto pick-N
//               A Service port with N endpoints walks N rules: O(its endpoints), O(1) in the number of Services.
//               (A vmap keyed by the looked-up count would be one lookup, but nft 1.0.x aborts listing such a
//               rule, and operators must be able to `nft list ruleset`.)
//   pick-N and its dispatch rule exist from the start for N <= STATIC_PICK_COUNTS: adding a rule that binds a
//   map makes the kernel walk every element of that map (nf_tables_bind_set), ~3.6 ms at 30k Services, so
//   these rules are never added in an incremental sync unless a Service port reaches more endpoints than that.
//   pick-N:     numgen random mod N -> slot;  dnat to ip daddr . meta l4proto . th dport . slot map @service-endpoints
//               (one chain per distinct endpoint count in use, shared by every Service with that count)
//   A Service port with N endpoints is: one @service-ips element (-> N) and N @service-endpoints elements
//   (slot k -> endpoint k). Each endpoint is chosen with probability 1/N; a new connection costs a few O(1)
//   hash lookups, whatever the number of Services.
//   hairpin:    one set of (endpoint . endpoint) pairs, matched in postrouting (a pod reaching itself through
//               its Service must see the node as the source).
//   no endpoints: the port is in the @no-endpoint-services / @no-endpoint-nodeports sets -> reject (TCP reset,
//               ICMP port unreachable), checked at prerouting/output priority -110, before DNAT, for new
//               connections, as kube-proxy does.
//   unused ports of a ClusterIP: rejected in forward / output after DNAT (daddr still the ClusterIP).
import { CIDR, ipToBytes, parseCIDR } from '../../model/ip';
import type { IPFamily, Protocol, ServicePort } from '../../model/types';
import {
  CT_STATE_NEW, ICMP_PORT_UNREACH, ICMPV6_PORT_UNREACH, IPPROTO, IPS_DST_NAT, NFPROTO_IPV4, NFPROTO_IPV6,
  NFTA_FIB_F_DADDR, NFT_CT_STATE, NFT_CT_STATUS, NFT_FIB_RESULT_ADDRTYPE,
  NFT_META_L4PROTO, NFT_META_MARK, NFT_NAT_DNAT, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_REG32_00, NFT_REG_1, NFT_REJECT_ICMP_UNREACH, NFT_REJECT_TCP_RST, NFT_SET_MAP,
  NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, NF_NAT_RANGE_MAP_IPS,
  NF_NAT_RANGE_PROTO_RANDOM_FULLY, NF_NAT_RANGE_PROTO_SPECIFIED, NfFamily, RTN_LOCAL, TYPE_INET_PROTOCOL,
  TYPE_INET_SERVICE, TYPE_IP6ADDR, TYPE_IPADDR, TYPE_MARK, concatType,
} from './netlink/constants';
import { RuleBuilder, hostU32 } from './netlink/expr';
import type { ChainState, ElementState, SetSpec, TableState } from './objects';
import { emptyTable } from './objects';

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
  dispatchIPs: 'dispatch-ips',
  dispatchNodePorts: 'dispatch-nodeports',
} as const;

/** Endpoint counts whose pick chains and dispatch rules are always there (see the file comment). */
export const STATIC_PICK_COUNTS = 32;

export const SETS = {
  serviceIPs: 'service-ips',
  externalIPs: 'external-ips',
  serviceEndpoints: 'service-endpoints',
  nodePortEndpoints: 'nodeport-endpoints',

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
  const mask = zeroed(len);
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
      r.bitwise(NFT_REG_1, NFT_REG_1, Buffer.from([255, 0, 0, 0]), zeroed(4)).cmp(NFT_REG_1, 'neq', Buffer.from([127, 0, 0, 0]));
    } else {
      r.cmp(NFT_REG_1, 'neq', ipToBytes('::1'));
    }
    return [finish(r)];
  }
  return cidrsOf(cfg.nodePortAddresses, f.ip).map((c) =>
    finish(local().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
      .bitwise(NFT_REG_1, NFT_REG_1, prefixMask(c.prefixLength, f.addrLen), zeroed(f.addrLen)).cmp(NFT_REG_1, 'eq', c.network)));
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

  // Marks first (each guarded by a membership test, so only Service traffic is marked), then the dispatch
  // chain, whose rules depend on which endpoint counts are in use (dispatchChain).
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
        .bitwise(NFT_REG_1, NFT_REG_1, prefixMask(c.prefixLength, f.addrLen), zeroed(f.addrLen)).cmp(NFT_REG_1, 'neq', c.network);
    }
    clusterIPMark.push(markIf(daddrProtoPort(r, f), SETS.serviceIPs));
  }
  chain(CHAINS.services, [
    ...clusterIPMark,
    // External traffic (externalIPs, LoadBalancer IPs, NodePorts) is always masqueraded (externalTrafficPolicy Cluster).
    markIf(daddrProtoPort(new RuleBuilder(), f), SETS.externalIPs),
    ...nodePortRules(f, cfg, (r) => markIf(protoPort(r), SETS.serviceNodePorts)),
    daddrProtoPort(new RuleBuilder(), f).lookup(SETS.serviceIPs, NFT_REG32_00).verdict({ kind: 'goto', chain: CHAINS.dispatchIPs }).body(),
    ...nodePortRules(f, cfg, (r) => protoPort(r).lookup(SETS.serviceNodePorts, NFT_REG32_00).verdict({ kind: 'goto', chain: CHAINS.dispatchNodePorts }).body()),
  ]);
  const statics = Array.from({ length: STATIC_PICK_COUNTS }, (_, i) => i + 1);
  for (const n of statics) {
    const a = pickChain(f, n, false);
    const b = pickChain(f, n, true);
    t.chains.set(a.name, a);
    t.chains.set(b.name, b);
  }
  const d = dispatchChains(f, cfg, statics, statics);
  for (const c of d) t.chains.set(c.name, c);
  chain(CHAINS.endpointsCheck, [
    daddrProtoPort(new RuleBuilder(), f).lookup(SETS.noEndpointServices, NFT_REG32_00).verdict({ kind: 'goto', chain: CHAINS.reject }).body(),
    ...nodePortRules(f, cfg, (r) => protoPort(r).lookup(SETS.noEndpointNodePorts, NFT_REG32_00).verdict({ kind: 'goto', chain: CHAINS.reject }).body()),
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
      .payload(NFT_REG32_00 + f.addrLen / 4, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
      .lookup(SETS.hairpin, NFT_REG32_00)
      .masquerade(NF_NAT_RANGE_PROTO_RANDOM_FULLY).body(),
  ]);

  const map = (name: string, keyType: number, keyLen: number, dataType: number, dataLen?: number): SetSpec =>
    ({ name, flags: NFT_SET_MAP, keyType, keyLen, dataType, dataLen });
  const set = (name: string, keyType: number, keyLen: number): SetSpec => ({ name, flags: 0, keyType, keyLen });
  const addrProtoPort = concatType(f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
  const protoPortType = concatType(TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
  const endpointType = concatType(f.addrType, TYPE_INET_SERVICE);
  for (const s of [
    map(SETS.serviceIPs, addrProtoPort, f.addrLen + 8, TYPE_MARK, 4),
    set(SETS.externalIPs, addrProtoPort, f.addrLen + 8),
    map(SETS.serviceNodePorts, protoPortType, 8, TYPE_MARK, 4),
    map(SETS.serviceEndpoints, concatType(f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_MARK), f.addrLen + 12, endpointType, f.addrLen + 4),
    map(SETS.nodePortEndpoints, concatType(TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_MARK), 12, endpointType, f.addrLen + 4),
    set(SETS.noEndpointServices, addrProtoPort, f.addrLen + 8),
    set(SETS.noEndpointNodePorts, protoPortType, 8),
    set(SETS.clusterIPs, f.addrType, f.addrLen),
    set(SETS.hairpin, concatType(f.addrType, f.addrType), 2 * f.addrLen),
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

/**
 * A zero-filled small buffer from Node's shared pool: Buffer.alloc gives every one its own ArrayBuffer, and
 * a 44k-Service sync makes ~10^5 of them, which showed up as most of its garbage-collection time.
 */
function zeroed(n: number): Buffer {
  return Buffer.allocUnsafe(n).fill(0);
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

/** An endpoint count as map data: big-endian, so `nft list` prints it as the number it is (only compared). */
function countData(n: number): Buffer {
  const b = zeroed(4);
  b.writeUInt32BE(n, 0);
  return b;
}

const protoPort = (r: RuleBuilder) => r.metaGet(NFT_META_L4PROTO, NFT_REG32_00).payload(NFT_REG32_00 + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);

/** The dispatch chains for these endpoint counts (each list ascending). */
export function dispatchChains(f: FamilyShape, cfg: NftablesConfig, counts: number[], nodePortCounts: number[]): ChainState[] {
  const ips = counts.map((n) => daddrProtoPort(new RuleBuilder(), f).lookup(SETS.serviceIPs, NFT_REG32_00, NFT_REG_1)
    .cmp(NFT_REG_1, 'eq', countData(n)).verdict({ kind: 'goto', chain: pickChainName(n, false) }).body());
  // NodePort destinations were checked in `services`: here only the count matters.
  const nodePorts = nodePortCounts.map((n) => protoPort(new RuleBuilder()).lookup(SETS.serviceNodePorts, NFT_REG32_00, NFT_REG_1)
    .cmp(NFT_REG_1, 'eq', countData(n)).verdict({ kind: 'goto', chain: pickChainName(n, true) }).body());
  void cfg;
  return [{ name: CHAINS.dispatchIPs, rules: ips }, { name: CHAINS.dispatchNodePorts, rules: nodePorts }];
}

/** Which counts the pick chains in a chain set stand for: pick-N and pick-nodeport-N. */
export function countsOfPickChains(names: Iterable<string>): { counts: number[]; nodePortCounts: number[] } {
  const counts: number[] = [];
  const nodePortCounts: number[] = [];
  for (const name of names) {
    const m = /^pick-(nodeport-)?(\d+)$/.exec(name);
    if (m) (m[1] ? nodePortCounts : counts).push(Number(m[2]));
  }
  const asc = (a: number, b: number) => a - b;
  return { counts: counts.sort(asc), nodePortCounts: nodePortCounts.sort(asc) };
}

/** The shared chain picking one of `count` endpoints (nodePort: for @nodeport-endpoints). */
export function pickChainName(count: number, nodePort: boolean): string {
  return nodePort ? `pick-nodeport-${count}` : `pick-${count}`;
}

/**
 * pick-N: choose slot = numgen random mod N, then DNAT to the endpoint in that slot of the Service port the packet
 * is addressed to. Registers: the slot goes right after the lookup key's other fields, so the key is contiguous.
 */
export function pickChain(f: FamilyShape, count: number, nodePort: boolean): ChainState {
  const words = f.addrLen / 4;
  const r = new RuleBuilder();
  const dataReg = NFT_REG32_00 + 8; // NFT_REG_3: endpoint address, then its port in the next 32-bit register
  if (nodePort) {
    r.numgenRandom(NFT_REG32_00 + 2, count)
      .metaGet(NFT_META_L4PROTO, NFT_REG32_00).payload(NFT_REG32_00 + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
      .lookup(SETS.nodePortEndpoints, NFT_REG32_00, dataReg);
  } else {
    r.numgenRandom(NFT_REG32_00 + words + 2, count);
    daddrProtoPort(r, f).lookup(SETS.serviceEndpoints, NFT_REG32_00, dataReg);
  }
  r.nat(NFT_NAT_DNAT, f.nf, dataReg, dataReg + words, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED);
  return { name: pickChainName(count, nodePort), rules: [r.body()] };
}

function addrProtoPortKey(ip: string, proto: number, port: number, slot?: number): Buffer {
  const addr = ipBytes(ip);
  const key = zeroed(addr.length + (slot === undefined ? 8 : 12));
  addr.copy(key, 0);
  key[addr.length] = proto;
  key.writeUInt16BE(port, addr.length + 4);
  if (slot !== undefined) key.writeUInt32LE(slot, addr.length + 8); // host order, as numgen writes it
  return key;
}

function protoPortKey(proto: number, port: number, slot?: number): Buffer {
  const key = zeroed(slot === undefined ? 8 : 12);
  key[0] = proto;
  key.writeUInt16BE(port, 4);
  if (slot !== undefined) key.writeUInt32LE(slot, 8);
  return key;
}

function endpointData(ip: string, port: number): Buffer {
  const addr = ipBytes(ip);
  const d = zeroed(addr.length + 4);
  addr.copy(d, 0);
  d.writeUInt16BE(port, addr.length);
  return d;
}

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
  const comment = sp.key;
  for (const ip of clusterIPs) frag.elements.push({ set: SETS.clusterIPs, element: { key: ipBytes(ip) } });

  if (endpoints.length === 0) {
    for (const ip of [...clusterIPs, ...externalIPs])
      frag.elements.push({ set: SETS.noEndpointServices, element: { key: addrProtoPortKey(ip, proto, sp.port), comment } });
    if (sp.nodePort) frag.elements.push({ set: SETS.noEndpointNodePorts, element: { key: protoPortKey(proto, sp.nodePort), comment } });
    return frag;
  }

  const n = endpoints.length;
  const count = countData(n);
  const data = endpoints.map((ep) => endpointData(ep.address, ep.port));
  for (const ep of endpoints) {
    const b = ipBytes(ep.address);
    frag.elements.push({ set: SETS.hairpin, element: { key: Buffer.concat([b, b]) } });
  }
  const addressed = (set: string, ips: string[]) => {
    for (const ip of ips) {
      frag.elements.push({ set, element: { key: addrProtoPortKey(ip, proto, sp.port), data: count, comment } });
      for (let k = 0; k < n; k++)
        frag.elements.push({ set: SETS.serviceEndpoints, element: { key: addrProtoPortKey(ip, proto, sp.port, k), data: data[k] } });
    }
  };
  addressed(SETS.serviceIPs, clusterIPs);
  addressed(SETS.serviceIPs, externalIPs);
  for (const ip of externalIPs) frag.elements.push({ set: SETS.externalIPs, element: { key: addrProtoPortKey(ip, proto, sp.port) } });
  if (n > STATIC_PICK_COUNTS) frag.chains.push(pickChain(f, n, false));
  if (sp.nodePort) {
    frag.elements.push({ set: SETS.serviceNodePorts, element: { key: protoPortKey(proto, sp.nodePort), data: count, comment } });
    for (let k = 0; k < n; k++)
      frag.elements.push({ set: SETS.nodePortEndpoints, element: { key: protoPortKey(proto, sp.nodePort, k), data: data[k] } });
    if (n > STATIC_PICK_COUNTS) frag.chains.push(pickChain(f, n, true));
  }
  return frag;
}

export function fragmentsOf(sp: ServicePort, cfg: NftablesConfig): Map<NfFamily, Fragment> {
  const out = new Map<NfFamily, Fragment>();
  for (const fam of FAMILIES) {
    const frag = fragmentFor(sp, fam.ip, cfg);
    if (frag) out.set(fam.nf, frag);
  }
  return out;
}

