// Rule pieces both tables build from (the nftables mode's, skeleton.ts, and the IPVS mode's, ipvs/filter.ts): where
// a family's addresses sit in the packet, and the matches (new connection, destination tuple, NodePort destination,
// loopback, from a pod, from the node). Each appends expressions to a RuleBuilder and returns it, so a rule reads as
// the matches it chains.
import { type CIDR, ipToBytes, parseCIDR } from '../../../model/ip';
import type { IPFamily } from '../../../model/types';
import {
  CT_STATE_NEW, NFPROTO_IPV4, NFPROTO_IPV6, NFTA_FIB_F_DADDR, NFTA_FIB_F_SADDR, NFT_CT_STATE, NFT_FIB_RESULT_ADDRTYPE, NFT_META_IIFNAME,
  NFT_META_L4PROTO, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00, NFT_REG_1, type NfFamily, RTN_LOCAL,
  TYPE_IP6ADDR, TYPE_IPADDR,
} from '../netlink/constants';
import { RuleBuilder, hostU32 } from '../netlink/expr';
import type { NftablesConfig } from './config';
import { zeroed } from './keys';

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

/** Loads `l4proto . dport` into consecutive 32-bit registers from NFT_REG32_00 (a NodePort's key). */
export const protoPort = (r: RuleBuilder) => r.metaGet(NFT_META_L4PROTO, NFT_REG32_00).payload(NFT_REG32_00 + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);

/** Appends `daddr @set`: the destination address alone is in `set` (a set of addresses). */
export function daddrIn(r: RuleBuilder, f: FamilyShape, set: string): RuleBuilder {
  return r.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen).lookup(set, NFT_REG_1);
}

/** Appends "the address at `offset` is (or is not) a loopback address": 127.0.0.0/8, ::1. */
export function loopback(r: RuleBuilder, f: FamilyShape, offset: number, yes: boolean): RuleBuilder {
  r.payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, offset, f.addrLen);
  if (f.ip === 4) return r.bitwise(NFT_REG_1, NFT_REG_1, Buffer.from([255, 0, 0, 0]), zeroed(4)).cmp(NFT_REG_1, yes ? 'eq' : 'neq', Buffer.from([127, 0, 0, 0]));
  return r.cmp(NFT_REG_1, yes ? 'eq' : 'neq', ipToBytes('::1'));
}

/**
 * Rules matching destinations NodePorts answer on (see NftablesConfig.nodePortAddresses): one per CIDR, or one
 * for "every local address but loopback". `finish` appends the rest of each rule and returns its body.
 */
export function nodePortRules(f: FamilyShape, cfg: NftablesConfig, finish: (r: RuleBuilder) => Buffer): Buffer[] {
  const local = () => new RuleBuilder().fib(NFT_REG_1, NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_DADDR).cmp(NFT_REG_1, 'eq', hostU32(RTN_LOCAL));
  if (cfg.nodePortAddresses.length === 0) {
    // Every local address but loopback: kube-proxy's nftables mode does not serve NodePorts on localhost.
    return [finish(loopback(local(), f, f.daddrOffset, false))];
  }
  return cidrsOf(cfg.nodePortAddresses, f.ip).map((c) =>
    finish(addressIn(local(), f, f.daddrOffset, c)));
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

/** Appends "the source is (or is not) an address of this node": traffic the node itself sends. */
export function fromNode(r: RuleBuilder, yes: boolean): RuleBuilder {
  return r.fib(NFT_REG_1, NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_SADDR).cmp(NFT_REG_1, yes ? 'eq' : 'neq', hostU32(RTN_LOCAL));
}

/** Traffic from outside the node and its pods: what externalTrafficPolicy Local is about. */
export function fromOutside(r: RuleBuilder, f: FamilyShape, cfg: NftablesConfig): RuleBuilder {
  return fromNode(notFromPods(r, f, cfg), false);
}
