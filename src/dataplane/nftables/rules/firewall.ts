// loadBalancerSourceRanges, the same in both tables (the nftables mode's endpoints-check chain, the IPVS mode's
// input-check and output-check). Only the LoadBalancer IPs are filtered (kube-proxy: not the ClusterIP, externalIPs
// or the NodePort behind the LB), before DNAT (prerouting, and output for the node's own traffic), new connections
// only: a firewalled LB IP drops a source outside its ranges. One set of concatenated ranges holds every LB IP's
// ranges, so a Service is elements.
import { type CIDR, cidrContains, parseCIDR, parseIP } from '../../../model/ip';
import type { IPFamily, ServicePort } from '../../../model/types';
import { NFT_PAYLOAD_NETWORK_HEADER, NFT_REG32_00, NFT_SET_CONCAT, NFT_SET_INTERVAL, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE, concatType } from '../netlink/constants';
import { RuleBuilder } from '../netlink/expr';
import type { SetSpec } from '../objects';
import type { FragmentElement } from './fragment';
import { type FamilyShape, daddrProtoPort } from './match';
import { SETS } from './names';

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
