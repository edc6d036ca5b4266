// Endpoint choice as data: the pick chains, their rules, and the count elements those rules compare (the nftables
// mode only; IPVS picks real servers itself).
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
// A Fragment names the rules it needs beyond the static ones by id (pickRuleId, affinityRuleId); the proxier keeps
// the ids in use and rebuilds a pick chain (pickChains) only when they change.
import {
  NFT_DYNSET_OP_UPDATE, NFT_META_L4PROTO, NFT_NAT_DNAT, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00,
  NFT_SET_EVAL, NFT_SET_TIMEOUT, NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, TYPE_MARK, concatType,
} from '../netlink/constants';
import { RuleBuilder, hostU32 } from '../netlink/expr';
import type { ChainState, SetSpec } from '../objects';
import { zeroed } from './keys';
import { type FamilyShape, daddrProtoPort, protoPort } from './match';
import { AFFINITY_SETS, CHAINS, SETS, STATIC_AFFINITY_COUNTS, STATIC_PICK_COUNTS } from './names';

/**
 * The four ways to a set of endpoint slots: by address (ClusterIP, externalIPs, LB IPs) or NodePort, to all
 * endpoints (the usual) or, for externalTrafficPolicy Local from outside the node, to this node's.
 */
export type PickKind = 'ip' | 'nodeport' | 'local-ip' | 'local-nodeport';
/** Each kind's chain, count map and slot map, and whether its key is a NodePort's (no address). */
export const PICK: Record<PickKind, { chain: string; counts: string; slots: string; nodePort: boolean }> = {
  ip: { chain: CHAINS.pickIPs, counts: SETS.serviceIPs, slots: SETS.serviceEndpoints, nodePort: false },
  nodeport: { chain: CHAINS.pickNodePorts, counts: SETS.serviceNodePorts, slots: SETS.nodePortEndpoints, nodePort: true },
  'local-ip': { chain: CHAINS.pickLocalIPs, counts: SETS.localIPs, slots: SETS.localEndpoints, nodePort: false },
  'local-nodeport': { chain: CHAINS.pickLocalNodePorts, counts: SETS.localNodePorts, slots: SETS.localNodePortEndpoints, nodePort: true },
};
export const PICK_KINDS = Object.keys(PICK) as PickKind[];

export const STATIC_COUNTS: readonly number[] = Array.from({ length: STATIC_PICK_COUNTS }, (_, i) => i + 1);

// Registers of a pick rule. The key (address . proto . port . slot) starts at NFT_REG32_00 and is contiguous;
// the endpoint (address, then port) lands in NFT_REG_3 (NFT_REG32_08..12); the count in NFT_REG32_14, clear of
// both for either family.
const COUNT_REG = NFT_REG32_00 + 14;
/** Where a membership test on a map puts the value nobody reads (kernels before 6.5: see skeleton). */
export const SCRATCH_REG = COUNT_REG;
const ENDPOINT_REG = NFT_REG32_00 + 8;

/** An endpoint count as map data: big-endian, so `nft list` prints it as the number it is (only compared). */
export function countData(n: number): Buffer {
  const b = zeroed(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** Names a pick rule a Service port needs: its kind and endpoint count. */
export function pickRuleId(kind: PickKind, count: number): string {
  return `${kind}:${count}`;
}

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
