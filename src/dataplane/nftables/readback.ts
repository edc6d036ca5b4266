// What svcplane's nftables table says when read back from the kernel (both modes' tables): the cluster CIDRs or pod
// interface the masquerade rule tells pods by, the Service CIDRs dropped, the source ranges an LB address accepts.
// For `explain` and `status`, which say what the kernel holds, not what svcplane remembers.
import { bytesToIp, ipToBytes } from '../../model/ip';
import { BITWISE, CMP, EXPR_NAME, LOOKUP, META, NFT_META_IIFNAME, NFPROTO_IPV4, PAYLOAD } from './netlink/constants';
import { parseRuleBody } from './netlink/expr';
import { attrString, attrU32 } from '../../native/recordStream';
import type { ElementState, TableState } from './objects';
import { CHAINS, SETS } from './rules/names';

/** The CIDRs a rule matches its source address against (`saddr & mask == net`), as "net/bits". */
export function saddrCIDRsOf(exprs: ReturnType<typeof parseRuleBody>, saddrOffset: number): string[] {
  const out: string[] = [];
  for (let i = 0; i + 2 < exprs.length; i++) {
    if (attrString(exprs[i], EXPR_NAME) !== 'payload' || attrU32(exprs[i], PAYLOAD.OFFSET) !== saddrOffset) continue;
    const mask = exprs[i + 1].get(BITWISE.MASK);
    const net = exprs[i + 2].get(CMP.DATA);
    if (attrString(exprs[i + 1], EXPR_NAME) !== 'bitwise' || !mask || !net) continue;
    let bits = 0;
    for (const b of mask) for (let k = 7; k >= 0; k--) if (b & (1 << k)) bits++;
    out.push(`${bytesToIp(net)}/${bits}`);
  }
  return out;
}

/**
 * The cluster CIDRs (or the pod interface: "cbr0", "veth*") and masqueradeAll as the services chain holds them (the
 * ClusterIP masquerade rule).
 */
export function masqueradeSettings(t: TableState): { cidrs: string[]; all: boolean; podInterface?: string } {
  const addrLen = t.family === 2 ? 4 : 16;
  const saddrOffset = addrLen === 4 ? 12 : 8;
  for (const body of t.chains.get(CHAINS.services)?.rules ?? []) {
    const exprs = parseRuleBody(body);
    if (!exprs.some((e) => attrString(e, EXPR_NAME) === 'lookup' && attrString(e, LOOKUP.SET) === SETS.clusterIPs)) continue;
    const i = exprs.findIndex((e) => attrString(e, EXPR_NAME) === 'meta' && attrU32(e, META.KEY) === NFT_META_IIFNAME);
    const name = i >= 0 ? exprs[i + 1]?.get(CMP.DATA) : undefined;
    if (name) {
      // All 16 bytes (NUL-padded): a bridge's exact name; fewer: a prefix (rules/match.ts notFromPods).
      const text = name.toString('latin1').replace(/\0+$/, '');
      return { cidrs: [], all: false, podInterface: name.length === 16 ? text : `${text}*` };
    }
    const cidrs = saddrCIDRsOf(exprs, saddrOffset);
    return { cidrs, all: cidrs.length === 0 };
  }
  return { cidrs: [], all: false };
}

/** The Service CIDRs the table drops unallocated addresses of (cluster-ips-check's drop rules, both modes). */
export function serviceCIDRsOf(t: TableState): string[] {
  const daddrOffset = t.family === 2 ? 16 : 24;
  return (t.chains.get(CHAINS.clusterIPsCheck)?.rules ?? []).flatMap((body) => saddrCIDRsOf(parseRuleBody(body), daddrOffset));
}

/** A set's elements as dumped (by key as latin1 text). */
export const elementsOf = (t: TableState, set: string) => t.elements.get(set) ?? new Map<string, ElementState>();
/** The element of `set` with this key, if the table holds it. */
export const elementOf = (t: TableState, set: string, key: Buffer) => elementsOf(t, set).get(key.toString('latin1'));
export const hasElement = (t: TableState, set: string, key: Buffer) => elementOf(t, set, key) !== undefined;

/**
 * The cluster CIDRs the services chain tells pods by (`ip saddr & mask != net` before the Local-policy view and the
 * ClusterIP masquerade): for saying what a source is, not for deciding (the rules decide).
 */
export function clusterCIDRsOf(t: TableState): string[] {
  const saddrOffset = t.family === NFPROTO_IPV4 ? 12 : 8;
  const out = new Set<string>();
  for (const body of t.chains.get(CHAINS.services)?.rules ?? []) for (const c of saddrCIDRsOf(parseRuleBody(body), saddrOffset)) out.add(c);
  return [...out];
}

/** The source ranges an LB address accepts (as text), and whether `from` is in one. */
export function firewallRangesIn(t: TableState, key: Buffer, from: string | undefined): { ranges: string[]; allowed?: boolean } | undefined {
  if (!hasElement(t, SETS.firewallIPs, key)) return undefined;
  const ranges: string[] = [];
  let allowed: boolean | undefined = from === undefined ? undefined : false;
  const fromBytes = from ? ipToBytes(from) : undefined;
  for (const e of elementsOf(t, SETS.firewallAllow).values()) {
    if (!e.keyEnd || !e.key.subarray(0, key.length).equals(key)) continue;
    const lo = e.key.subarray(key.length);
    const hi = e.keyEnd.subarray(key.length);
    let bits = 0;
    for (let i = 0; i < lo.length; i++) {
      const x = lo[i] ^ hi[i];
      for (let k = 7; k >= 0; k--) if (!(x & (1 << k))) bits++; else break;
      if (x !== 0) break;
    }
    ranges.push(`${bytesToIp(lo)}/${bits}`);
    if (fromBytes && Buffer.compare(fromBytes, lo) >= 0 && Buffer.compare(fromBytes, hi) <= 0) allowed = true;
  }
  return { ranges, allowed };
}
