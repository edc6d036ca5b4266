// Which UDP endpoints a change took away from which Service address (pure): read off the endpoint-slot elements
// before and after (slot maps: address . proto . port . slot -> endpoint, or proto . port . slot for NodePorts). An
// endpoint that was in a UDP tuple's slots before and is in none after leaves flows to delete (conntrack.ts).
import { bytesToIp } from '../../model/ip';
import type { StaleFlow } from '../conntrack';
import type { ElementState } from './objects';

const UDP = 17;

/** `before` and `after` hold elements of one slot map of a family's table (addrLen 0 for the NodePort maps). */
export function staleUdpFlows(family: 4 | 6, addrLen: number, before: Iterable<ElementState>, after: Iterable<ElementState>): StaleFlow[] {
  const tupleOf = (e: ElementState) => e.key.subarray(0, e.key.length - 4).toString('latin1');
  const was = new Map<string, Set<string>>();
  for (const e of before) {
    if (!e.data || e.key[addrLen] !== UDP) continue;
    const t = tupleOf(e);
    let s = was.get(t);
    if (!s) was.set(t, (s = new Set()));
    s.add(e.data.toString('latin1'));
  }
  if (was.size === 0) return [];
  const is = new Map<string, Set<string>>();
  for (const e of after) {
    if (!e.data || e.key[addrLen] !== UDP) continue;
    const t = tupleOf(e);
    if (!was.has(t)) continue;
    let s = is.get(t);
    if (!s) is.set(t, (s = new Set()));
    s.add(e.data.toString('latin1'));
  }
  const epLen = family === 4 ? 4 : 16;
  const out: StaleFlow[] = [];
  for (const [t, eps] of was) {
    const key = Buffer.from(t, 'latin1');
    const dst = addrLen ? bytesToIp(key.subarray(0, addrLen)) : undefined;
    const dport = key.readUInt16BE(addrLen + 4);
    for (const ep of eps) {
      if (is.get(t)?.has(ep)) continue;
      const d = Buffer.from(ep, 'latin1');
      out.push({ family, dst, dport, endpoint: bytesToIp(d.subarray(0, epLen)), endpointPort: d.readUInt16BE(epLen) });
    }
  }
  return out;
}
