// Reads a programmed table back into "service address:port proto -> endpoints" rows, from the kernel's objects
// only (the maps the packet path looks up), so status shows what the kernel really does, not what we meant.
import { bytesToIp } from '../../model/ip';
import type { StatusEndpoint, StatusRow } from '../types';
import { EXPR_NAME, NFPROTO_IPV4, NUMGEN } from './netlink/constants';
import { parseRuleBody } from './netlink/expr';
import { attrString, attrU32 } from '../../native/recordStream';
import type { ElementState, TableState } from './objects';
import { CHAINS, SETS } from './rules/names';
import { countOf } from './rules/picks';

const PROTO_NAME: Record<number, string> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

function endpointOf(data: Buffer | undefined, addrLen: number): StatusEndpoint | undefined {
  if (!data || data.length < addrLen + 2) return undefined;
  return { address: bytesToIp(data.subarray(0, addrLen)), port: data.readUInt16BE(addrLen) };
}

/** A count element's comment: "ns/name:port" or "ns/name:port (reason; reason)" (rules/fragment.ts fragmentFor). */
export function splitComment(comment: string | undefined): { service: string; why: string[] } {
  if (!comment) return { service: '', why: [] };
  const i = comment.indexOf(' (');
  if (i < 0) return { service: comment, why: [] };
  return { service: comment.slice(0, i), why: comment.slice(i + 2).replace(/\)$/, '').split('; ').filter(Boolean) };
}

export function statusRows(t: TableState): StatusRow[] {
  const family: 4 | 6 = t.family === NFPROTO_IPV4 ? 4 : 6;
  const addrLen = family === 4 ? 4 : 16;
  const rows: StatusRow[] = [];
  const elems = (set: string): Map<string, ElementState> => t.elements.get(set) ?? new Map();
  const slots = (set: string, prefix: Buffer, count: number): StatusEndpoint[] => {
    const out: StatusEndpoint[] = [];
    const all = elems(set);
    for (let k = 0; k < count; k++) {
      const key = Buffer.alloc(prefix.length + 4);
      prefix.copy(key);
      key.writeUInt32LE(k, prefix.length);
      const ep = endpointOf(all.get(key.toString('latin1'))?.data, addrLen);
      if (ep) out.push(ep);
    }
    // A weighted endpoint holds several slots (model/weights.ts weightedSlots()): one row with its share as weight.
    const byEp = new Map<string, StatusEndpoint>();
    for (const ep of out) {
      const id = `${ep.address}|${ep.port}`;
      const have = byEp.get(id);
      if (have) have.weight = (have.weight ?? 1) + 1;
      else byEp.set(id, ep);
    }
    if (byEp.size === out.length) return out;
    for (const ep of byEp.values()) ep.weight ??= 1;
    return [...byEp.values()];
  };
  // A count is only served if its pick chain has a rule for it (the rule's numgen modulus is the count).
  const pickCounts = (chain: string) => new Set((t.chains.get(chain)?.rules ?? []).flatMap((body) =>
    parseRuleBody(body).filter((e) => attrString(e, EXPR_NAME) === 'numgen').map((e) => attrU32(e, NUMGEN.MODULUS))));
  const counts = new Map<string, Set<number | undefined>>([CHAINS.pickIPs, CHAINS.pickNodePorts, CHAINS.pickLocalIPs, CHAINS.pickLocalNodePorts].map((c) => [c, pickCounts(c)]));
  const served = (count: number, chain: string) => counts.get(chain)!.has(count);
  const has = (set: string, key: Buffer) => elems(set).has(key.toString('latin1'));

  // externalIPs and LoadBalancer IPs share @service-ips; @external-ips (policy Cluster) and @local-policy-ips
  // (policy Local) tell them apart. Under Local, a row shows what clients from outside get: this node's endpoints.
  for (const e of elems(SETS.serviceIPs).values()) {
    if (e.key.length !== addrLen + 8 || !e.data) continue;
    const local = has(SETS.localPolicyIPs, e.key);
    const view = local ? elems(SETS.localIPs).get(e.key.toString('latin1')) : e;
    const { count, affinitySeconds } = view?.data ? countOf(view.data) : { count: 0, affinitySeconds: undefined };
    const row: StatusRow = {
      family,
      protocol: PROTO_NAME[e.key[addrLen]] ?? String(e.key[addrLen]),
      address: bytesToIp(e.key.subarray(0, addrLen)),
      port: e.key.readUInt16BE(addrLen + 4),
      kind: local || has(SETS.externalIPs, e.key) ? 'External' : 'ClusterIP',
      service: splitComment(e.comment).service,
      endpoints: !view ? [] : served(count, local ? CHAINS.pickLocalIPs : CHAINS.pickIPs) ? slots(local ? SETS.localEndpoints : SETS.serviceEndpoints, e.key, count) : [],
      reject: false,
    };
    if (local) row.policy = 'Local';
    if (has(SETS.dropExternal, e.key)) row.drop = true;
    if (affinitySeconds) row.persistentSeconds = affinitySeconds;
    const why = splitComment(view?.comment ?? e.comment).why;
    if (why.length) row.why = why;
    rows.push(row);
  }
  for (const e of elems(SETS.dropServices).values()) {
    if (e.key.length !== addrLen + 8) continue;
    rows.push({
      family, protocol: PROTO_NAME[e.key[addrLen]] ?? String(e.key[addrLen]), address: bytesToIp(e.key.subarray(0, addrLen)),
      port: e.key.readUInt16BE(addrLen + 4), kind: 'ClusterIP', service: e.comment ?? '', endpoints: [], reject: false, drop: true,
    });
  }
  for (const e of elems(SETS.noEndpointServices).values()) {
    if (e.key.length !== addrLen + 8) continue;
    rows.push({
      family, protocol: PROTO_NAME[e.key[addrLen]] ?? String(e.key[addrLen]), address: bytesToIp(e.key.subarray(0, addrLen)),
      port: e.key.readUInt16BE(addrLen + 4), kind: 'ClusterIP', service: e.comment ?? '', endpoints: [], reject: true,
    });
  }
  for (const e of elems(SETS.serviceNodePorts).values()) {
    if (e.key.length !== 8 || !e.data) continue;
    const local = has(SETS.localPolicyNodePorts, e.key);
    const view = local ? elems(SETS.localNodePorts).get(e.key.toString('latin1')) : e;
    const { count, affinitySeconds } = view?.data ? countOf(view.data) : { count: 0, affinitySeconds: undefined };
    const row: StatusRow = {
      family, protocol: PROTO_NAME[e.key[0]] ?? String(e.key[0]), address: '*', port: e.key.readUInt16BE(4), kind: 'NodePort',
      service: splitComment(e.comment).service, reject: false,
      endpoints: !view ? [] : served(count, local ? CHAINS.pickLocalNodePorts : CHAINS.pickNodePorts) ? slots(local ? SETS.localNodePortEndpoints : SETS.nodePortEndpoints, e.key, count) : [],
    };
    if (local) row.policy = 'Local';
    if (has(SETS.dropNodePorts, e.key)) row.drop = true;
    if (affinitySeconds) row.persistentSeconds = affinitySeconds;
    const why = splitComment(view?.comment ?? e.comment).why;
    if (why.length) row.why = why;
    rows.push(row);
  }
  for (const e of elems(SETS.noEndpointNodePorts).values()) {
    if (e.key.length !== 8) continue;
    rows.push({
      family, protocol: PROTO_NAME[e.key[0]] ?? String(e.key[0]), address: '*', port: e.key.readUInt16BE(4), kind: 'NodePort',
      service: e.comment ?? '', endpoints: [], reject: true,
    });
  }
  rows.sort((a, b) => (a.kind === 'NodePort' ? 1 : 0) - (b.kind === 'NodePort' ? 1 : 0) || a.address.localeCompare(b.address) || a.port - b.port || a.protocol.localeCompare(b.protocol));
  return rows;
}
