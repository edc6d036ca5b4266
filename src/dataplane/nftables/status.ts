// Reads a programmed table back into "service address:port proto -> endpoints" rows, from the kernel's objects
// only (vmap elements, chains, DNAT rules), so status shows what the kernel really does, not what we meant.
import { bytesToIp } from '../../model/ip';
import type { StatusEndpoint, StatusRow } from '../types';
import { EXPR_NAME, IMM, NFPROTO_IPV4, NFT_REG_1, NFT_REG_2 } from './netlink/constants';
import { parseRuleBody } from './netlink/expr';
import { attrString, attrU32 } from './netlink/records';
import type { TableState } from './objects';
import { SETS } from './ruleset';

const PROTO_NAME: Record<number, string> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

interface ChainTargets {
  endpoints: StatusEndpoint[];
  gotoChain?: string;
}

function chainTargets(t: TableState, chain: string): ChainTargets {
  const out: ChainTargets = { endpoints: [] };
  const c = t.chains.get(chain);
  if (!c) return out;
  for (const body of c.rules) {
    let addr: string | undefined;
    let port: number | undefined;
    for (const e of parseRuleBody(body)) {
      const name = attrString(e, EXPR_NAME);
      if (name === 'immediate') {
        const dreg = attrU32(e, IMM.DREG);
        const data = e.get(IMM.DATA);
        if (dreg === NFT_REG_1 && data && (data.length === 4 || data.length === 16)) addr = bytesToIp(data);
        else if (dreg === NFT_REG_2 && data && data.length >= 2) port = data.readUInt16BE(0);
        const target = attrString(e, IMM.CHAIN);
        if (target) out.gotoChain = target;
      } else if (name === 'nat' && addr !== undefined && port !== undefined) {
        out.endpoints.push({ address: addr, port });
      }
    }
  }
  return out;
}

/** "svc-ns/name/tcp/http" -> "ns/name:http" */
export function serviceOfChain(chain: string): string {
  const m = /^(?:svc|ext)-([^/]+)\/([^/]+)\/[^/]+\/(.*)$/.exec(chain);
  return m ? `${m[1]}/${m[2]}:${m[3]}` : chain;
}

export function statusRows(t: TableState): StatusRow[] {
  const family: 4 | 6 = t.family === NFPROTO_IPV4 ? 4 : 6;
  const addrLen = family === 4 ? 4 : 16;
  const rows: StatusRow[] = [];
  const resolve = (chain: string) => {
    const first = chainTargets(t, chain);
    if (first.endpoints.length || !first.gotoChain) return { service: serviceOfChain(chain), endpoints: first.endpoints };
    return { service: serviceOfChain(first.gotoChain), endpoints: chainTargets(t, first.gotoChain).endpoints };
  };
  const addrRows = (set: string, reject: boolean) => {
    for (const e of t.elements.get(set)?.values() ?? []) {
      if (e.key.length !== addrLen + 8) continue;
      const address = bytesToIp(e.key.subarray(0, addrLen));
      const protocol = PROTO_NAME[e.key[addrLen]] ?? String(e.key[addrLen]);
      const port = e.key.readUInt16BE(addrLen + 4);
      const chain = e.chain ?? '';
      const r = reject ? { service: '', endpoints: [] } : resolve(chain);
      const kind = set === SETS.externalIPs ? 'External' : 'ClusterIP';
      rows.push({ family, protocol, address, port, kind, service: r.service, endpoints: r.endpoints, reject });
    }
  };
  const portRows = (set: string, reject: boolean) => {
    for (const e of t.elements.get(set)?.values() ?? []) {
      if (e.key.length !== 8) continue;
      const protocol = PROTO_NAME[e.key[0]] ?? String(e.key[0]);
      const port = e.key.readUInt16BE(4);
      const r = reject ? { service: '', endpoints: [] } : resolve(e.chain ?? '');
      rows.push({ family, protocol, address: '*', port, kind: 'NodePort', service: r.service, endpoints: r.endpoints, reject });
    }
  };
  addrRows(SETS.serviceIPs, false);
  addrRows(SETS.externalIPs, false);
  addrRows(SETS.noEndpointServices, true);
  portRows(SETS.serviceNodePorts, false);
  portRows(SETS.noEndpointNodePorts, true);
  rows.sort((a, b) => (a.kind === 'NodePort' ? 1 : 0) - (b.kind === 'NodePort' ? 1 : 0) || a.address.localeCompare(b.address) || a.port - b.port || a.protocol.localeCompare(b.protocol));
  return rows;
}
