// Model -> nftables objects (pure). Two tables named `svcplane`, one per family (ip, ip6), like kube-proxy's
// `kube-proxy` tables; base chains at the priorities kube-proxy's nftables mode made the convention.
//
// Every per-Service object is a set or map ELEMENT; there is no per-Service chain or rule. Two kernel facts,
// measured on 6.18 (bench/, bench/results/), decided this:
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
//   pick-ips:   one rule per endpoint count N in use:
//                 ip daddr . meta l4proto . th dport map @service-ips == N,
//                 numgen random mod N -> slot,
//                 dnat to ip daddr . meta l4proto . th dport . slot map @service-endpoints
//               A Service port with N endpoints walks N rules: O(its endpoints), O(1) in the number of Services.
//               (A vmap keyed by the looked-up count would be one lookup, but nft 1.0.x aborts listing such a
//               rule, and operators must be able to `nft list ruleset`. Registers do not carry a value from one
//               rule to the next, so each rule repeats the count lookup.)
//   All pick rules live in ONE chain per key kind because a rule that binds a map (a lookup with a data
//   register) makes nf_tables_bind_set walk every element of that map, unless the map is already bound from
//   the same chain: with 32 pick chains a 5k x 50 full sync spent 2 s of kernel time walking @service-endpoints.
//   Rules for N <= STATIC_PICK_COUNTS exist from the start, so a partial sync is elements only unless a Service
//   port reaches more endpoints than that (then its count's rule joins the chain, with no walk: same chain).
//   A Service port with N endpoints is: one @service-ips element (-> N) and N @service-endpoints elements
//   (slot k -> endpoint k). Each endpoint is chosen with probability 1/N; a new connection costs a few O(1)
//   hash lookups, whatever the number of Services.
//   hairpin:    one set of (endpoint . endpoint) pairs, matched in postrouting (a pod reaching itself through
//               its Service must see the node as the source).
//   no endpoints: the port is in the @no-endpoint-services / @no-endpoint-nodeports sets -> reject (TCP reset,
//               ICMP port unreachable), checked at prerouting/output priority -110, before DNAT, for new
//               connections, as kube-proxy does.
//   cluster-ips-check (forward -110, output -90: after DNAT, new connections): what still goes to a ClusterIP
//               is to a port it does not serve -> reject; to an address in a Service CIDR no Service holds -> drop
//               (kube-proxy's "Drop traffic to unallocated ClusterIPs"; Service CIDRs from ServiceCIDR objects).
//   unused ports of a ClusterIP: rejected in forward / output after DNAT (daddr still the ClusterIP).
import { CIDR, cidrContains, ipToBytes, parseCIDR, parseIP } from '../../model/ip';
import type { Endpoint, IPFamily, Protocol, ServicePort } from '../../model/types';
import { choiceReasons, chooseEndpoints } from '../../model/topology';
import { weightedSlots } from '../../model/weights';
import {
  CT_STATE_NEW, ICMP_PORT_UNREACH, ICMPV6_PORT_UNREACH, IPPROTO, IPS_DST_NAT, NFPROTO_IPV4, NFPROTO_IPV6,
  NFTA_FIB_F_DADDR, NFTA_FIB_F_SADDR, NFT_CT_STATE, NFT_CT_STATUS, NFT_FIB_RESULT_ADDRTYPE,
  NFT_META_IIFNAME, NFT_META_L4PROTO, NFT_META_MARK, NFT_NAT_DNAT, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_DYNSET_OP_UPDATE, NFT_REG32_00, NFT_REG_1, NFT_REJECT_ICMP_UNREACH, NFT_REJECT_TCP_RST, NFT_SET_CONCAT, NFT_SET_EVAL, NFT_SET_INTERVAL, NFT_SET_MAP, NFT_SET_TIMEOUT,
  NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, NF_NAT_RANGE_MAP_IPS,
  NF_NAT_RANGE_PROTO_RANDOM_FULLY, NF_NAT_RANGE_PROTO_SPECIFIED, NfFamily, RTN_LOCAL, TYPE_INET_PROTOCOL,
  TYPE_INET_SERVICE, TYPE_IP6ADDR, TYPE_IPADDR, TYPE_MARK, concatType,
} from './netlink/constants';
import { RuleBuilder, hostU32 } from './netlink/expr';
import { MAX_COMMENT_BYTES } from './netlink/udata';
import { type KernelSupport, supports } from './kernel';
import type { ChainState, DesiredTable, ElementState, SetSpec } from './objects';
import { emptyTable } from './objects';

export const TABLE_NAME = 'svcplane';

export interface NftablesConfig {
  /** Table name in both families (tests use others to run side by side). */
  tableName: string;
  /**
   * Pod CIDRs: traffic from outside them to a ClusterIP is masqueraded (kube-proxy's detectLocalMode ClusterCIDR;
   * NodeCIDR gives the Node's podCIDRs here).
   */
  clusterCIDRs: string[];
  /**
   * detectLocalMode BridgeInterface / InterfaceNamePrefix: traffic from pods is what arrives on this interface (or
   * on any whose name starts with it); clusterCIDRs are then not used to tell pods.
   */
  podInterface?: { name: string; prefix: boolean };
  masqueradeAll: boolean;
  /** NodePorts answer on local addresses within these CIDRs; empty: every local address but loopback. */
  nodePortAddresses: string[];
  /** The packet mark bit used to ask for masquerade (kube-proxy: 14, mark 0x4000). */
  masqueradeBit: number;
  /** This node's name (Node object, --hostname-override): hairpin pairs are only needed for its own endpoints. */
  nodeName?: string;
  /** This node's zone (topology.kubernetes.io/zone): topology hints are used only when it is known. */
  nodeZone?: string;
  /**
   * This node's primary addresses (one per family; the Node's InternalIPs, or --node-ip): a LoadBalancer whose
   * source ranges hold one of them also accepts its own LB IPs as sources (firewallElements).
   */
  nodeIPs?: string[];
  /**
   * The cluster's Service CIDRs (ServiceCIDR objects' spec.cidrs, and --service-cidr): new traffic to an address
   * inside them that no Service holds is dropped, as kube-proxy's nftables mode does ("Drop traffic to unallocated
   * ClusterIPs"), instead of following the node's routes out of it. Empty: nothing dropped.
   */
  serviceCIDRs?: string[];
  /**
   * What the kernel's nf_tables accepts (kernel.ts), which picks the ruleset's shape; undefined until probed (the
   * proxier probes before its first sync) and, for the pure functions here, every construct.
   */
  kernel?: KernelSupport;
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
  pickIPs: 'pick-ips',
  pickNodePorts: 'pick-nodeports',
  pickLocalIPs: 'pick-local-ips',
  pickLocalNodePorts: 'pick-local-nodeports',
} as const;

/** Endpoint counts whose pick rules are always there (see the file comment). */
export const STATIC_PICK_COUNTS = 32;

export const SETS = {
  serviceIPs: 'service-ips',
  /** externalIPs and LoadBalancer IPs of externalTrafficPolicy Cluster: always masqueraded. */
  externalIPs: 'external-ips',
  serviceEndpoints: 'service-endpoints',
  nodePortEndpoints: 'nodeport-endpoints',
  serviceNodePorts: 'service-nodeports',
  /** NodePorts of externalTrafficPolicy Cluster: always masqueraded. */
  masqNodePorts: 'masq-nodeports',
  /** externalTrafficPolicy Local: the addresses / NodePorts (masqueraded only from the node itself). */
  localPolicyIPs: 'local-policy-ips',
  localPolicyNodePorts: 'local-policy-nodeports',
  /** externalTrafficPolicy Local: this node's endpoints, for clients from outside the node (source kept). */
  localIPs: 'local-ips',
  localEndpoints: 'local-endpoints',
  localNodePorts: 'local-nodeports',
  localNodePortEndpoints: 'local-nodeport-endpoints',
  noEndpointServices: 'no-endpoint-services',
  noEndpointNodePorts: 'no-endpoint-nodeports',
  /** Endpoints exist, none here, under a Local policy: dropped (kube-proxy), so a client can try another node. */
  dropServices: 'drop-services',
  dropExternal: 'drop-external',
  dropNodePorts: 'drop-nodeports',
  clusterIPs: 'cluster-ips',
  hairpin: 'hairpin-endpoints',
  /** LoadBalancer IPs with loadBalancerSourceRanges (address . proto . port)... */
  firewallIPs: 'firewall-ips',
  /** ...and the sources each accepts: address . proto . port . source range (a set of concatenated ranges). */
  firewallAllow: 'firewall-allow',
} as const;

/**
 * The four ways to a set of endpoint slots: by address (ClusterIP, externalIPs, LB IPs) or NodePort, to all
 * endpoints (the usual) or, for externalTrafficPolicy Local from outside the node, to this node's.
 */
export type PickKind = 'ip' | 'nodeport' | 'local-ip' | 'local-nodeport';
const PICK: Record<PickKind, { chain: string; counts: string; slots: string; nodePort: boolean }> = {
  ip: { chain: CHAINS.pickIPs, counts: SETS.serviceIPs, slots: SETS.serviceEndpoints, nodePort: false },
  nodeport: { chain: CHAINS.pickNodePorts, counts: SETS.serviceNodePorts, slots: SETS.nodePortEndpoints, nodePort: true },
  'local-ip': { chain: CHAINS.pickLocalIPs, counts: SETS.localIPs, slots: SETS.localEndpoints, nodePort: false },
  'local-nodeport': { chain: CHAINS.pickLocalNodePorts, counts: SETS.localNodePorts, slots: SETS.localNodePortEndpoints, nodePort: true },
};
export const PICK_KINDS = Object.keys(PICK) as PickKind[];

export interface FamilyShape {
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
export function cidrsOf(list: string[], family: IPFamily): CIDR[] {
  return list.map((c) => parseCIDR(c)).filter((c): c is CIDR => c !== undefined && c.family === family);
}

export function prefixMask(prefixLength: number, len: number): Buffer {
  const mask = zeroed(len);
  for (let i = 0; i < prefixLength; i++) mask[i >> 3] |= 0x80 >> (i & 7);
  return mask;
}

// ---- rule fragments -----------------------------------------------------------------------------------------

const PROTO_NUMBER: Record<Protocol, number> = IPPROTO;

export function ctStateNew(r: RuleBuilder): RuleBuilder {
  return r.ctGet(NFT_CT_STATE, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(CT_STATE_NEW), hostU32(0))
    .cmp(NFT_REG_1, 'neq', hostU32(0));
}

/** Loads `daddr . l4proto . dport` into consecutive 32-bit registers from NFT_REG32_00. */
export function daddrProtoPort(r: RuleBuilder, f: FamilyShape): RuleBuilder {
  const words = f.addrLen / 4;
  return r.payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
    .metaGet(NFT_META_L4PROTO, NFT_REG32_00 + words)
    .payload(NFT_REG32_00 + words + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
}

/**
 * Rules matching destinations NodePorts answer on (see NftablesConfig.nodePortAddresses): one per CIDR, or one
 * for "every local address but loopback". `finish` appends the rest of each rule and returns its body.
 */
export function nodePortRules(f: FamilyShape, cfg: NftablesConfig, finish: (r: RuleBuilder) => Buffer): Buffer[] {
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
    finish(addressIn(local(), f, f.daddrOffset, c)));
}


// ---- loadBalancerSourceRanges ----------------------------------------------------------------------------------
// Only the LoadBalancer IPs are filtered (kube-proxy: not the ClusterIP, externalIPs or the NodePort behind the LB),
// before DNAT (prerouting, and output for the node's own traffic), new connections only: a firewalled LB IP drops
// a source outside its ranges. One set of concatenated ranges holds every LB IP's ranges, so a Service is elements.

/** The set of address . proto . port . source ranges (pipapo: NFT_SET_INTERVAL | NFT_SET_CONCAT). */
export function firewallAllowSpec(f: FamilyShape): SetSpec {
  return {
    name: SETS.firewallAllow, flags: NFT_SET_INTERVAL | NFT_SET_CONCAT,
    keyType: concatType(f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, f.addrType), keyLen: 2 * f.addrLen + 8,
    // Field lengths as nft gives them: address, protocol (1 byte), port (2), source address.
    concat: [f.addrLen, 1, 2, f.addrLen],
  };
}

/** ip daddr . l4proto . dport @firewall-ips  ip daddr . l4proto . dport . ip saddr != @firewall-allow  drop */
export function firewallRule(f: FamilyShape): Buffer {
  const r = daddrProtoPort(new RuleBuilder(), f).lookup(SETS.firewallIPs, NFT_REG32_00);
  return r.payload(NFT_REG32_00 + f.addrLen / 4 + 2, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen)
    .lookup(SETS.firewallAllow, NFT_REG32_00, undefined, true).verdict({ kind: 'drop' }).body();
}

/**
 * The source ranges an LB IP of `sp` accepts in `family`: its loadBalancerSourceRanges and, when one of them holds
 * this node's primary address of that family, the Service's LB IPs of that family too (kube-proxy's allowFromNode:
 * a VIP-style load balancer's IP is often a local address of the node, and the node's own requests to it then come
 * from that IP). The condition is kube-proxy's exactly: the node's address in a range, not whether the LB IP is local.
 */
export function firewallRanges(sp: Pick<ServicePort, 'loadBalancerSourceRanges' | 'loadBalancerIPs'>, family: IPFamily, nodeIPs: string[] = []): string[] {
  const ranges = sp.loadBalancerSourceRanges;
  const nodeIP = nodeIPs.find((ip) => parseIP(ip)?.family === family);
  const fromNode = nodeIP !== undefined && ranges.some((r) => parseCIDR(r)?.family === family && cidrContains(r, nodeIP));
  if (!fromNode) return ranges;
  return [...ranges, ...sp.loadBalancerIPs.filter((ip) => parseIP(ip)?.family === family).map((ip) => `${ip}/${family === 4 ? 32 : 128}`)];
}

/**
 * The firewall elements of one LB IP (key: its address . proto . port), or none when its ranges allow everything
 * (a /0 among them: kube-proxy's IsZeroCIDR). Ranges of the other family are not this table's; with none of this
 * family, every source of this family is dropped (it is in no range).
 */
export function firewallElements(key: Buffer, ranges: string[], family: IPFamily): FragmentElement[] {
  const cidrs = ranges.map((r) => parseCIDR(r)).filter((c): c is CIDR => c !== undefined);
  if (ranges.length === 0 || cidrs.some((c) => c.prefixLength === 0)) return [];
  const out: FragmentElement[] = [{ set: SETS.firewallIPs, key }];
  for (const c of cidrs) {
    if (c.family !== family) continue;
    const last = Buffer.from(c.network);
    for (let i = 0; i < last.length * 8; i++) if (i >= c.prefixLength) last[i >> 3] |= 0x80 >> (i & 7);
    out.push({ set: SETS.firewallAllow, key: Buffer.concat([key, c.network]), keyEnd: Buffer.concat([key, last]) });
  }
  return out;
}

/** Whether traffic from pods can be told from the rest in this family (a pod interface, or a cluster CIDR of it). */
export function canTellPods(f: FamilyShape, cfg: NftablesConfig): boolean {
  return cfg.podInterface !== undefined || cidrsOf(cfg.clusterCIDRs, f.ip).length > 0;
}

/**
 * Appends "the source is not a pod": `iifname != "<bridge>"` / `iifname != "<prefix>*"` with a pod interface, else
 * `ip saddr != <cluster CIDR>` (nothing when neither is configured: no way to tell pods). `meta iifname` loads the
 * whole IFNAMSIZ name, NUL-padded: a bridge compares all 16 bytes, a prefix only its own.
 */
export function notFromPods(r: RuleBuilder, f: FamilyShape, cfg: NftablesConfig): RuleBuilder {
  if (cfg.podInterface) {
    const name = Buffer.from(cfg.podInterface.name);
    return r.metaGet(NFT_META_IIFNAME, NFT_REG_1).cmp(NFT_REG_1, 'neq', cfg.podInterface.prefix ? name : Buffer.concat([name, Buffer.alloc(16 - name.length)]));
  }
  for (const c of cidrsOf(cfg.clusterCIDRs, f.ip)) {
    r.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen)
      .bitwise(NFT_REG_1, NFT_REG_1, prefixMask(c.prefixLength, f.addrLen), zeroed(f.addrLen)).cmp(NFT_REG_1, 'neq', c.network);
  }
  return r;
}

/** Appends "the address at `offset` is inside `c`" (a prefix match: mask, compare). */
export function addressIn(r: RuleBuilder, f: FamilyShape, offset: number, c: CIDR): RuleBuilder {
  return r.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, offset, f.addrLen)
    .bitwise(NFT_REG_1, NFT_REG_1, prefixMask(c.prefixLength, f.addrLen), zeroed(f.addrLen)).cmp(NFT_REG_1, 'eq', c.network);
}

/**
 * `daddr in <each Service CIDR of this family> drop`, one rule per CIDR (a cluster has one or two per family).
 * Placed after Service traffic was DNATed (or, in IPVS mode, after ClusterIPs returned), so what still goes to
 * such an address is to one no Service holds.
 */
export function unallocatedDrops(f: FamilyShape, cfg: NftablesConfig): Buffer[] {
  return cidrsOf(cfg.serviceCIDRs ?? [], f.ip).map((c) => addressIn(new RuleBuilder(), f, f.daddrOffset, c).verdict({ kind: 'drop' }).body());
}

/** Appends "the source is (or is not) an address of this node": traffic the node itself sends. */
export function fromNode(r: RuleBuilder, yes: boolean): RuleBuilder {
  return r.fib(NFT_REG_1, NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_SADDR).cmp(NFT_REG_1, yes ? 'eq' : 'neq', hostU32(RTN_LOCAL));
}

/** Traffic from outside the node and its pods: what externalTrafficPolicy Local is about. */
function fromOutside(r: RuleBuilder, f: FamilyShape, cfg: NftablesConfig): RuleBuilder {
  return fromNode(notFromPods(r, f, cfg), false);
}

export function markForMasquerade(r: RuleBuilder, cfg: NftablesConfig): RuleBuilder {
  const bit = 1 << cfg.masqueradeBit;
  return r.metaGet(NFT_META_MARK, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, hostU32(~bit), hostU32(bit))
    .metaSet(NFT_META_MARK, NFT_REG_1);
}

// ---- the skeleton: everything that does not depend on Services ---------------------------------------------

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

  // Marks first (each guarded by a membership test, so only Service traffic is marked), then the pick chains,
  // whose rules depend on which endpoint counts are in use (pickChains).
  const markIf = (r: RuleBuilder, set: string) => markForMasquerade(member(r, set), cfg).body();
  // ClusterIP traffic (the address alone: service-ips also holds external addresses, which follow their own
  // policy below): masqueraded from off-cluster sources (not from a pod CIDR), so replies come back through this
  // node; all of it with masqueradeAll.
  const clusterIPMark: Buffer[] = [];
  const toClusterIP = (r: RuleBuilder) => r.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen).lookup(SETS.clusterIPs, NFT_REG_1);
  if (cfg.masqueradeAll) clusterIPMark.push(markForMasquerade(toClusterIP(new RuleBuilder()), cfg).body());
  else if (canTellPods(f, cfg)) clusterIPMark.push(markForMasquerade(toClusterIP(notFromPods(new RuleBuilder(), f, cfg)), cfg).body());
  // externalTrafficPolicy (kube-proxy's external chain): Cluster is always masqueraded; Local keeps the client's
  // source and goes to this node's endpoints (pick-local-*), except for this node's pods and the node itself,
  // which are sent to all endpoints ("short-circuit"; the node's own traffic masqueraded).
  const goto = (r: RuleBuilder, set: string, target: string) => member(r, set).verdict({ kind: 'goto', chain: target }).body();
  chain(CHAINS.services, [
    ...clusterIPMark,
    markIf(daddrProtoPort(new RuleBuilder(), f), SETS.externalIPs),
    markIf(daddrProtoPort(fromNode(new RuleBuilder(), true), f), SETS.localPolicyIPs),
    ...nodePortRules(f, cfg, (r) => markIf(protoPort(r), SETS.masqNodePorts)),
    ...nodePortRules(f, cfg, (r) => markIf(protoPort(fromNode(r, true)), SETS.localPolicyNodePorts)),
    goto(daddrProtoPort(fromOutside(new RuleBuilder(), f, cfg), f), SETS.localIPs, CHAINS.pickLocalIPs),
    goto(daddrProtoPort(new RuleBuilder(), f), SETS.serviceIPs, CHAINS.pickIPs),
    ...nodePortRules(f, cfg, (r) => goto(protoPort(fromOutside(r, f, cfg)), SETS.localNodePorts, CHAINS.pickLocalNodePorts)),
    ...nodePortRules(f, cfg, (r) => goto(protoPort(r), SETS.serviceNodePorts, CHAINS.pickNodePorts)),
  ]);
  for (const c of pickChains(f, { counts: new Map(), affinity: new Map() })) t.chains.set(c.name, c);
  // Before DNAT, new connections only: no endpoints at all is refused at once; endpoints elsewhere but none here
  // under a Local policy is dropped (for external traffic only from outside: pods and the node short-circuit).
  const drop = (r: RuleBuilder, set: string) => member(r, set).verdict({ kind: 'drop' }).body();
  chain(CHAINS.endpointsCheck, [
    firewallRule(f),
    goto(daddrProtoPort(new RuleBuilder(), f), SETS.noEndpointServices, CHAINS.reject),
    ...nodePortRules(f, cfg, (r) => goto(protoPort(r), SETS.noEndpointNodePorts, CHAINS.reject)),
    drop(daddrProtoPort(new RuleBuilder(), f), SETS.dropServices),
    drop(daddrProtoPort(fromOutside(new RuleBuilder(), f, cfg), f), SETS.dropExternal),
    ...nodePortRules(f, cfg, (r) => drop(protoPort(fromOutside(r, f, cfg)), SETS.dropNodePorts)),
  ]);
  chain(CHAINS.clusterIPsCheck, [
    new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen)
      .lookup(SETS.clusterIPs, NFT_REG_1).verdict({ kind: 'goto', chain: CHAINS.reject }).body(),
    ...unallocatedDrops(f, cfg),
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

  for (const s of specs) {
    t.sets.set(s.name, s);
    t.elements.set(s.name, []);
  }
  return t;
}

// ---- per Service port ---------------------------------------------------------------------------------------

/** An element with the set it goes in (one object per element: a 250k-endpoint sync makes 500k of them). */
export interface FragmentElement extends ElementState {
  set: string;
}

/**
 * One address:port/protocol (or NodePort/protocol) a Service port claims, with every element it programs for it
 * (the count or no-endpoint entry and the endpoint slots). Claims are the unit of ownership: one Service port
 * holds an address:port, a second one claiming it is a conflict (see ledger.ts).
 */
export interface Claim {
  /** "<address>|<proto>|<port>" or "nodeport|<proto>|<port>" */
  id: string;
  elements: FragmentElement[];
}

/** An element several Service ports may want (a ClusterIP in cluster-ips, a hairpin pair). */
export interface SharedElement extends FragmentElement {
  /** "<set>|<address>" */
  id: string;
}

/** What one Service port contributes to one family's table. */
export interface Fragment {
  claims: Claim[];
  shared: SharedElement[];
  /** Pick rules it needs beyond the static ones (pickRuleId): a rule stays while any Service port needs it. */
  picks: string[];
}

/** "198.18.0.1:80/TCP", "NodePort 30080/TCP": a claim id for people. */
export function describeClaim(id: string): string {
  const [addr, proto, port] = id.split('|');
  const name = PROTO_NAME[Number(proto)] ?? proto;
  if (addr === 'nodeport') return `NodePort ${port}/${name}`;
  return addr.includes(':') ? `[${addr}]:${port}/${name}` : `${addr}:${port}/${name}`;
}

const PROTO_NAME: Record<number, string> = Object.fromEntries(Object.entries(IPPROTO).map(([k, v]) => [v, k]));

/**
 * A zero-filled small buffer from Node's shared pool: Buffer.alloc gives every one its own ArrayBuffer, and
 * a 44k-Service sync makes ~10^5 of them, which showed up as most of its garbage-collection time.
 */
export function zeroed(n: number): Buffer {
  return Buffer.allocUnsafe(n).fill(0);
}

// No caches of address bytes: the agent keeps no per-address Buffer alive between syncs (memory at 30k Services),
// and parsing is cheaper than a lookup for IPv4 (writeIP).
export function pairBytes(ip: string): Buffer {
  const a = ipToBytes(ip);
  return Buffer.concat([a, a]);
}

/** The element a shared id ("<set>|<address>", as fragmentFor makes them) stands for. */
export function sharedElementOf(id: string): FragmentElement {
  const bar = id.indexOf('|');
  const set = id.slice(0, bar);
  const ip = id.slice(bar + 1);
  return { set, key: set === SETS.hairpin ? pairBytes(ip) : ipToBytes(ip) };
}

/** An endpoint count as map data: big-endian, so `nft list` prints it as the number it is (only compared). */
function countData(n: number): Buffer {
  const b = zeroed(4);
  b.writeUInt32BE(n, 0);
  return b;
}

export const protoPort = (r: RuleBuilder) => r.metaGet(NFT_META_L4PROTO, NFT_REG32_00).payload(NFT_REG32_00 + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);

export const STATIC_COUNTS: readonly number[] = Array.from({ length: STATIC_PICK_COUNTS }, (_, i) => i + 1);

/** Names a pick rule a Service port needs: its kind and endpoint count. */
export function pickRuleId(kind: PickKind, count: number): string {
  return `${kind}:${count}`;
}

/**
 * Affinity rules for counts up to this exist whenever a timeout is in use (one id per kind and timeout), so adding or
 * removing an endpoint of an affinity port is elements only, as without affinity; counts beyond it get their own.
 * (Measured, bench/affinity.ts: rules per count made each such change rebuild the pick chain, ~80 operations.)
 */
export const STATIC_AFFINITY_COUNTS = 16;

/** Names the rules a sessionAffinity ClientIP port of `count` endpoints and timeout `seconds` needs. */
export function affinityRuleId(kind: PickKind, seconds: number, count: number): string {
  return count <= STATIC_AFFINITY_COUNTS ? `aff:${kind}:${seconds}` : `aff:${kind}:${seconds}:${count}`;
}

export interface DynamicPicks {
  /** Endpoint counts beyond the static ones, per kind, ascending. */
  counts: Map<PickKind, number[]>;
  /** sessionAffinity ClientIP: per kind, per timeout (seconds), the endpoint counts in use, ascending. */
  affinity: Map<PickKind, Map<number, number[]>>;
}

/** The rules named by pick rule ids (pickRuleId, affinityRuleId) beyond the static ones. */
export function dynamicCounts(ids: Iterable<string>): DynamicPicks {
  const out: DynamicPicks = { counts: new Map(), affinity: new Map() };
  for (const id of ids) {
    const parts = id.split(':');
    if (parts[0] === 'aff') {
      const kind = parts[1] as PickKind;
      let m = out.affinity.get(kind);
      if (!m) out.affinity.set(kind, (m = new Map()));
      const t = Number(parts[2]);
      const more = parts.length > 3 ? [Number(parts[3])] : Array.from({ length: STATIC_AFFINITY_COUNTS }, (_, i) => i + 1);
      const list = m.get(t);
      if (list) list.push(...more);
      else m.set(t, more);
      continue;
    }
    const kind = parts[0] as PickKind;
    const list = out.counts.get(kind);
    if (list) list.push(Number(parts[1]));
    else out.counts.set(kind, [Number(parts[1])]);
  }
  for (const list of out.counts.values()) list.sort((a, b) => a - b);
  for (const m of out.affinity.values()) for (const [t, list] of m) m.set(t, [...new Set(list)].sort((a, b) => a - b));
  return out;
}

/**
 * The pick chains, one per kind: rules for the static counts plus the dynamic ones; then, per affinity timeout in
 * use, the affinity rules (see affinityRules). A Service port without affinity matches a count rule and never
 * reaches them.
 */
export function pickChains(f: FamilyShape, dyn: DynamicPicks): ChainState[] {
  const all = (more: readonly number[]) => [...new Set([...STATIC_COUNTS, ...more])].sort((a, b) => a - b);
  return PICK_KINDS.map((kind) => {
    const rules = all(dyn.counts.get(kind) ?? []).map((n) => pickRule(f, n, kind));
    const aff = dyn.affinity.get(kind);
    for (const t of [...(aff?.keys() ?? [])].sort((a, b) => a - b)) rules.push(...affinityRules(f, kind, t, aff!.get(t)!));
    return { name: PICK[kind].chain, rules };
  });
}

// Registers of a pick rule. The key (address . proto . port . slot) starts at NFT_REG32_00 and is contiguous;
// the endpoint (address, then port) lands in NFT_REG_3 (NFT_REG32_08..12); the count in NFT_REG32_14, clear of
// both for either family.
const COUNT_REG = NFT_REG32_00 + 14;
/** Where a membership test on a map puts the value nobody reads (kernels before 6.5: see skeleton). */
const SCRATCH_REG = COUNT_REG;
const ENDPOINT_REG = NFT_REG32_00 + 8;

/**
 * The pick rule for Service ports with `count` endpoints: if the port's count is `count`, slot = numgen random
 * mod count, then DNAT to the endpoint in that slot of the Service port the packet is addressed to.
 */
export function pickRule(f: FamilyShape, count: number, kind: PickKind): Buffer {
  const words = f.addrLen / 4;
  const r = new RuleBuilder();
  const k = PICK[kind];
  if (k.nodePort) {
    protoPort(r).lookup(k.counts, NFT_REG32_00, COUNT_REG).cmp(COUNT_REG, 'eq', countData(count))
      .numgenRandom(NFT_REG32_00 + 2, count)
      .lookup(k.slots, NFT_REG32_00, ENDPOINT_REG);
  } else {
    daddrProtoPort(r, f).lookup(k.counts, NFT_REG32_00, COUNT_REG).cmp(COUNT_REG, 'eq', countData(count))
      .numgenRandom(NFT_REG32_00 + words + 2, count)
      .lookup(k.slots, NFT_REG32_00, ENDPOINT_REG);
  }
  return r.nat(NFT_NAT_DNAT, f.nf, ENDPOINT_REG, ENDPOINT_REG + words, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED).body();
}

// ---- sessionAffinity ClientIP ---------------------------------------------------------------------------------
// kube-proxy keeps a set of client addresses per endpoint (a set and a rule per endpoint); svcplane keeps one set
// per key shape, of `client . service address . proto . port . slot` with a timeout per element, so affinity is
// elements the kernel adds itself (dynset), and rules exist per timeout in use, not per Service:
//   for each slot k below the largest endpoint count with that timeout:
//     client . destination . k in @affinity -> refresh its timeout, DNAT to slot k (if the slot still exists)
//   for each endpoint count N with that timeout:
//     count == N with the affinity mark -> slot = numgen mod N, remember client . destination . slot, DNAT
// An affinity port's count carries the mark and its timeout (affinityData), so only these rules match it.
// Differences from kube-proxy, by design: affinity is per address the client uses (ClusterIP, NodePort, each
// external address), not across them; when the endpoints change, slots are renumbered and some clients move.

/** The sets of remembered clients: for addresses, and for NodePorts (no destination address in the key). */
export const AFFINITY_SETS = { ip: 'affinity', nodeport: 'affinity-nodeport' } as const;
/** Endpoint counts above this cannot carry the affinity mark: such ports are programmed without affinity. */
export const MAX_AFFINITY_COUNT = 0xfff;

/** An affinity port's count: mark bit 31, the timeout in seconds (bits 12-28: at most 86400), the count (0-11). */
export function affinityData(count: number, seconds: number): Buffer {
  const b = zeroed(4);
  b.writeUInt32BE((0x80000000 | (seconds << 12) | count) >>> 0, 0);
  return b;
}

/** Count, and timeout when affinity is on, of a count element's data. */
export function countOf(data: Buffer): { count: number; affinitySeconds?: number } {
  const v = data.readUInt32BE(0);
  if (!(v & 0x80000000)) return { count: v };
  return { count: v & 0xfff, affinitySeconds: (v >>> 12) & 0x1ffff };
}

/**
 * A dynamic set gets room for 65535 elements unless told otherwise, and a full one makes the rule that would add a
 * client fail (no DNAT): room for a million remembered clients per family (memory goes with what is held).
 */
export const AFFINITY_SET_SIZE = 1 << 20;

export function affinitySetSpec(f: FamilyShape, nodePort: boolean): SetSpec {
  const flags = NFT_SET_TIMEOUT | NFT_SET_EVAL;
  return nodePort
    ? { name: AFFINITY_SETS.nodeport, flags, keyType: concatType(f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_MARK), keyLen: f.addrLen + 12, size: AFFINITY_SET_SIZE }
    : { name: AFFINITY_SETS.ip, flags, keyType: concatType(f.addrType, f.addrType, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_MARK), keyLen: 2 * f.addrLen + 12, size: AFFINITY_SET_SIZE };
}

/** The affinity rules of one kind and timeout, for ports of these endpoint counts (ascending). */
export function affinityRules(f: FamilyShape, kind: PickKind, seconds: number, counts: readonly number[]): Buffer[] {
  const k = PICK[kind];
  const w = f.addrLen / 4;
  // Registers: client address at 00, then (for addresses) the destination address, proto, port and the slot; the
  // service tuple + slot (the slot map's key) is the tail of the remembered key.
  const dst = NFT_REG32_00 + w;
  const slot = k.nodePort ? dst + 2 : dst + w + 2;
  const endpoint = slot + 1;
  const set = k.nodePort ? AFFINITY_SETS.nodeport : AFFINITY_SETS.ip;
  const load = () => {
    const r = new RuleBuilder().payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen);
    if (!k.nodePort) r.payload(dst, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen);
    const p = k.nodePort ? dst : dst + w;
    return r.metaGet(NFT_META_L4PROTO, p).payload(p + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
  };
  const dnat = (r: RuleBuilder) => r.lookup(k.slots, dst, endpoint).nat(NFT_NAT_DNAT, f.nf, endpoint, endpoint + w, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED).body();
  const ms = seconds * 1000;
  const rules: Buffer[] = [];
  const max = Math.max(...counts);
  for (let i = 0; i < max; i++) {
    rules.push(dnat(load().immediateData(slot, hostU32(i)).lookup(set, NFT_REG32_00).dynset(NFT_DYNSET_OP_UPDATE, set, NFT_REG32_00, ms)));
  }
  for (const n of counts) {
    rules.push(dnat(load().lookup(k.counts, dst, COUNT_REG).cmp(COUNT_REG, 'eq', affinityData(n, seconds))
      .numgenRandom(slot, n).dynset(NFT_DYNSET_OP_UPDATE, set, NFT_REG32_00, ms)));
  }
  return rules;
}

/**
 * Writes an address's bytes at `off`; returns their length. IPv4 text is parsed in place: at 250k endpoints this
 * is faster than any cache lookup. (Addresses reaching the ruleset were validated by the model.)
 */
function writeIP(buf: Buffer, off: number, ip: string): number {
  if (ip.includes(':')) {
    buf.set(ipToBytes(ip), off);
    return 16;
  }
  let v = 0;
  let o = off;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46 /* . */) {
      buf[o++] = v;
      v = 0;
    } else {
      v = v * 10 + c - 48;
    }
  }
  buf[o] = v;
  return 4;
}

const addrLenOf = (ip: string) => (ip.includes(':') ? 16 : 4);

export function addrProtoPortKey(ip: string, proto: number, port: number): Buffer {
  const len = addrLenOf(ip);
  const key = zeroed(len + 8);
  writeIP(key, 0, ip);
  key[len] = proto;
  key.writeUInt16BE(port, len + 4);
  return key;
}

/** `base . slot` for slots 0..n-1 (slot in host order, as numgen writes it), as views of one allocation. */
function slotKeys(base: Buffer, n: number): Buffer[] {
  const len = base.length + 4;
  const all = Buffer.allocUnsafe(len * n);
  const out: Buffer[] = new Array(n);
  for (let k = 0; k < n; k++) {
    const off = k * len;
    all.set(base, off);
    all.writeUInt32LE(k, off + base.length);
    out[k] = all.subarray(off, off + len);
  }
  return out;
}

export function protoPortKey(proto: number, port: number): Buffer {
  const key = zeroed(8);
  key[0] = proto;
  key.writeUInt16BE(port, 4);
  return key;
}

function endpointData(ip: string, port: number): Buffer {
  const len = addrLenOf(ip);
  const d = zeroed(len + 4);
  writeIP(d, 0, ip);
  d.writeUInt16BE(port, len);
  return d;
}

export function ofFamily(ips: string[], family: IPFamily, exclude: readonly string[] = []): string[] {
  return [...new Set(ips.filter((ip) => (ip.includes(':') ? 6 : 4) === family && !exclude.includes(ip)))];
}

/**
 * Whether an endpoint needs a hairpin pair: only a pod on this node can reach itself through this node's rules
 * (a pod elsewhere is proxied by its own node), so with the node's name known, endpoints of other nodes are left
 * out: a 250k-endpoint cluster then needs ~100 pairs per node, not 250k. Endpoints without a nodeName (external
 * backends in hand-made EndpointSlices) are kept.
 */
export function needsHairpin(nodeName: string | undefined, endpointNode: string | undefined): boolean {
  return !nodeName || !endpointNode || endpointNode === nodeName;
}

/**
 * The fragment of one Service port for one family, or undefined when the Service has no address of that
 * family (a single-stack Service only lives in its own family's table, NodePorts included).
 */
export function fragmentFor(sp: ServicePort, ipFamily: IPFamily, cfg: NftablesConfig): Fragment | undefined {
  const clusterIPs = ofFamily(sp.clusterIPs, ipFamily);
  if (clusterIPs.length === 0) return undefined;
  // An external address equal to a ClusterIP adds nothing: the ClusterIP's claim already serves it.
  const externalIPs = ofFamily([...sp.externalIPs, ...sp.loadBalancerIPs], ipFamily, clusterIPs);
  const proto = PROTO_NUMBER[sp.protocol];
  const choice = chooseEndpoints(sp, ipFamily, { name: cfg.nodeName, zone: cfg.nodeZone });
  const frag: Fragment = { claims: [], shared: [], picks: [] };
  const comment = sp.key;
  // Ids are kept in the ledgers between syncs: flat strings (join), not cons strings.
  const claimId = (ip: string) => [ip, proto, sp.port].join('|');
  const nodePortId = ['nodeport', proto, sp.nodePort].join('|');
  for (const ip of clusterIPs) frag.shared.push({ id: [SETS.clusterIPs, ip].join('|'), set: SETS.clusterIPs, key: ipToBytes(ip) });
  const hairpins = new Set<string>();
  const affinity = sp.sessionAffinity.type === 'ClientIP' ? Math.min(Math.max(1, sp.sessionAffinity.timeoutSeconds), 86400) : 0;
  const pick = (kind: PickKind, n: number) => {
    const id = pickRuleId(kind, n);
    if (n > STATIC_PICK_COUNTS && !frag.picks.includes(id)) frag.picks.push(id);
  };
  /** count + slot elements of `endpoints` under `key`, in the count map and slot map of `kind`. */
  const node = { name: cfg.nodeName, zone: cfg.nodeZone };
  /** The count element's comment: the Service port, and why its endpoints are these (explain and status read it). */
  const why = (view: 'cluster' | 'local') => {
    const r = choiceReasons(choice, view, node);
    if (sp.endpointWeights) r.push('weighted');
    return commentWithReasons(comment, r);
  };
  const slotsOf = (kind: PickKind, key: Buffer, endpoints: Endpoint[], out: FragmentElement[]) => {
    const k = PICK[kind];
    const bySlot = weightedSlots(endpoints, sp.endpointWeights);
    const n = bySlot.length;
    const sticky = affinity > 0 && n <= MAX_AFFINITY_COUNT;
    const view = kind === 'local-ip' || kind === 'local-nodeport' || (kind === 'ip' && endpoints === choice.local && choice.local !== choice.cluster) ? 'local' : 'cluster';
    out.push({ set: k.counts, key, data: sticky ? affinityData(n, affinity) : countData(n), comment: why(view) });
    const slots = slotKeys(key, n);
    for (let i = 0; i < n; i++) out.push({ set: k.slots, key: slots[i], data: endpointData(bySlot[i].address, bySlot[i].port) });
    for (const ep of endpoints) {
      if (!hairpins.has(ep.address) && needsHairpin(cfg.nodeName, ep.nodeName)) {
        hairpins.add(ep.address);
        frag.shared.push({ id: [SETS.hairpin, ep.address].join('|'), set: SETS.hairpin, key: pairBytes(ep.address) });
      }
    }
    if (sticky) {
      const id = affinityRuleId(kind, affinity, n);
      if (!frag.picks.includes(id)) frag.picks.push(id);
    } else pick(kind, n);
  };

  // Endpoint weights (svcplane.io/endpoint-weights): an endpoint of weight w holds w slots (weights divided by their
  // greatest common divisor, and scaled down past a bound: model/weights.ts), so numgen picks it with probability
  // w / total. All weights 0: nothing to pick.
  if (sp.endpointWeights) {
    for (const list of [choice.cluster, choice.local, choice.internal, choice.external]) {
      if (list.length && weightedSlots(list, sp.endpointWeights).length === 0) list.length = 0;
    }
    if (choice.cluster.length === 0 && choice.local.length === 0) choice.hasAny = false;
  }
  for (const ip of clusterIPs) {
    const key = addrProtoPortKey(ip, proto, sp.port);
    const elements: FragmentElement[] = [];
    if (choice.internal.length) slotsOf('ip', key, choice.internal, elements);
    else elements.push({ set: choice.hasAny ? SETS.dropServices : SETS.noEndpointServices, key, comment });
    frag.claims.push({ id: claimId(ip), elements });
  }
  const local = choice.externalLocal;
  for (const ip of externalIPs) {
    const key = addrProtoPortKey(ip, proto, sp.port);
    const elements: FragmentElement[] = [];
    if (sp.loadBalancerIPs.includes(ip)) elements.push(...firewallElements(key, firewallRanges(sp, ipFamily, cfg.nodeIPs), ipFamily));
    if (!choice.hasAny) elements.push({ set: SETS.noEndpointServices, key, comment });
    else {
      // All endpoints: externalTrafficPolicy Cluster, or this node's pods and the node itself under Local.
      slotsOf('ip', key, choice.cluster, elements);
      if (!local) elements.push({ set: SETS.externalIPs, key });
      else {
        elements.push({ set: SETS.localPolicyIPs, key });
        if (choice.local.length) slotsOf('local-ip', key, choice.local, elements);
        else elements.push({ set: SETS.dropExternal, key, comment });
      }
    }
    frag.claims.push({ id: claimId(ip), elements });
  }
  if (sp.nodePort) {
    const key = protoPortKey(proto, sp.nodePort);
    const elements: FragmentElement[] = [];
    if (!choice.hasAny) elements.push({ set: SETS.noEndpointNodePorts, key, comment });
    else {
      slotsOf('nodeport', key, choice.cluster, elements);
      if (!local) elements.push({ set: SETS.masqNodePorts, key });
      else {
        elements.push({ set: SETS.localPolicyNodePorts, key });
        if (choice.local.length) slotsOf('local-nodeport', key, choice.local, elements);
        else elements.push({ set: SETS.dropNodePorts, key, comment });
      }
    }
    frag.claims.push({ id: nodePortId, elements });
  }
  return frag;
}

/**
 * "ns/name:port (reason; reason)", within the kernel's comment size: the Service port's name always whole (status
 * and explain find the Service by it), then as many reasons as fit, the rest summed up as "+N more".
 */
export function commentWithReasons(service: string, reasons: string[]): string {
  if (reasons.length === 0) return service;
  const full = `${service} (${reasons.join('; ')})`;
  if (Buffer.byteLength(full) <= MAX_COMMENT_BYTES) return full;
  const kept: string[] = [];
  for (const r of reasons) {
    const more = reasons.length - kept.length - 1;
    const candidate = `${service} (${[...kept, r].join('; ')}${more ? `; +${more} more` : ''})`;
    if (Buffer.byteLength(candidate) > MAX_COMMENT_BYTES) break;
    kept.push(r);
  }
  const text = `${service} (${[...kept, `+${reasons.length - kept.length} more`].join('; ')})`;
  return Buffer.byteLength(text) <= MAX_COMMENT_BYTES ? text : service;
}

export function fragmentsOf(sp: ServicePort, cfg: NftablesConfig): Map<NfFamily, Fragment> {
  const out = new Map<NfFamily, Fragment>();
  for (const fam of FAMILIES) {
    const frag = fragmentFor(sp, fam.ip, cfg);
    if (frag) out.set(fam.nf, frag);
  }
  return out;
}
