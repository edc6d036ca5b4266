// Reads a programmed table back into "service address:port proto -> endpoints" rows, from the kernel's objects
// only (the maps the packet path looks up), so status shows what the kernel really does, not what we meant.
import { bytesToIp } from '../../model/ip';
import type { StatusEndpoint, StatusRow } from '../types';
import { EXPR_NAME, NFPROTO_IPV4, NUMGEN } from './netlink/constants';
import { parseRuleBody } from './netlink/expr';
import { attrString, attrU32 } from './netlink/records';
import type { ElementState, TableState } from './objects';
import { CHAINS, SETS } from './ruleset';

const PROTO_NAME: Record<number, string> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

function endpointOf(data: Buffer | undefined, addrLen: number): StatusEndpoint | undefined {
  if (!data || data.length < addrLen + 2) return undefined;
  return { address: bytesToIp(data.subarray(0, addrLen)), port: data.readUInt16BE(addrLen) };
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
    return out;
  };
  // A count is only served if its pick chain has a rule for it (the rule's numgen modulus is the count).
  const pickCounts = (chain: string) => new Set((t.chains.get(chain)?.rules ?? []).flatMap((body) =>
    parseRuleBody(body).filter((e) => attrString(e, EXPR_NAME) === 'numgen').map((e) => attrU32(e, NUMGEN.MODULUS))));
  const ipCounts = pickCounts(CHAINS.pickIPs);
  const nodePortCounts = pickCounts(CHAINS.pickNodePorts);
  const served = (count: number, nodePort: boolean) => (nodePort ? nodePortCounts : ipCounts).has(count);

  const addrRows = (set: string, kind: 'ClusterIP' | 'External') => {
    // externalIPs and LoadBalancer IPs share @service-ips; @external-ips tells them apart.
    for (const e of elems(set).values()) {
      if (e.key.length !== addrLen + 8 || !e.data) continue;
      const count = e.data.readUInt32BE(0);
      rows.push({
        family,
        protocol: PROTO_NAME[e.key[addrLen]] ?? String(e.key[addrLen]),
        address: bytesToIp(e.key.subarray(0, addrLen)),
        port: e.key.readUInt16BE(addrLen + 4),
        kind: elems(SETS.externalIPs).has(e.key.toString('latin1')) ? 'External' : kind,
        service: e.comment ?? '',
        endpoints: served(count, false) ? slots(SETS.serviceEndpoints, e.key, count) : [],
        reject: false,
      });
    }
  };
  addrRows(SETS.serviceIPs, 'ClusterIP');
  for (const e of elems(SETS.noEndpointServices).values()) {
    if (e.key.length !== addrLen + 8) continue;
    rows.push({
      family, protocol: PROTO_NAME[e.key[addrLen]] ?? String(e.key[addrLen]), address: bytesToIp(e.key.subarray(0, addrLen)),
      port: e.key.readUInt16BE(addrLen + 4), kind: 'ClusterIP', service: e.comment ?? '', endpoints: [], reject: true,
    });
  }
  for (const e of elems(SETS.serviceNodePorts).values()) {
    if (e.key.length !== 8 || !e.data) continue;
    const count = e.data.readUInt32BE(0);
    rows.push({
      family, protocol: PROTO_NAME[e.key[0]] ?? String(e.key[0]), address: '*', port: e.key.readUInt16BE(4), kind: 'NodePort',
      service: e.comment ?? '', endpoints: served(count, true) ? slots(SETS.nodePortEndpoints, e.key, count) : [], reject: false,
    });
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
