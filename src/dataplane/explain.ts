// `svcplane explain`: what the kernel does with one flow, read from what is programmed. Each dataplane answers
// through Dataplane.explain (nftables/explain.ts runs the table's rules on the flow's first packet; ipvs/explain.ts
// reads the virtual services and the table beside them); this file holds what they answer in, and its text form.
// It answers which Service port a destination matches, which endpoints a new connection from a given source can
// reach and why: the policy (the Local views and drops), topology, termination and weights, loadBalancerSourceRanges,
// the masquerade decision and a remembered sessionAffinity entry. Nothing comes from svcplane's memory: a flow is
// explained the same by a fresh process as by the agent that programmed it.
import type { Protocol } from '../model/types';

export interface FlowQuery {
  protocol: Protocol;
  address: string;
  port: number;
  /** The client's address; without it, source-dependent answers are given for each kind of source. */
  from?: string;
  /** The interface its traffic arrives on (detectLocalMode BridgeInterface / InterfaceNamePrefix tell pods by it). */
  fromInterface?: string;
}

export interface ExplainedEndpoint {
  address: string;
  port: number;
  /** Share of new connections (weights folded), e.g. 0.5. */
  share?: number;
  weight?: number;
  activeConns?: number;
  inactiveConns?: number;
}

export interface Explanation {
  flow: FlowQuery;
  /** What the destination is: a ClusterIP, an external address (externalIP / LB IP), a NodePort, or nothing. */
  kind: 'ClusterIP' | 'External' | 'NodePort' | 'unused ClusterIP port' | 'none';
  service?: string;
  /** What a new connection gets: forwarded to endpoints, refused at once, dropped, or not handled by svcplane. */
  verdict: 'forwarded' | 'rejected' | 'dropped' | 'not a Service';
  endpoints: ExplainedEndpoint[];
  /** Reasons, in order, each a sentence. */
  why: string[];
  masquerade?: boolean;
  /** IPVS only. */
  scheduler?: string;
  /**
   * ebpf mode: what the socket hooks do with a connection to this address that starts on this node (its processes
   * and pods), read from the maps. The rest of the explanation is the nftables path (traffic from other machines).
   */
  socket?: { verdict: 'translated' | 'refused' | 'left to nftables'; endpoints: ExplainedEndpoint[]; why: string };
  /**
   * What may make the kernel do otherwise than the maps say: svcplane's table or base chains changed (dormant,
   * missing, policy drop), another table's rule at the same hook that may take the flow first (nftables/explain-hooks.ts).
   */
  warnings?: string[];
}

/** The explanation as text, for a person. */
export function formatExplanation(e: Explanation): string {
  const q = e.flow;
  const host = q.address.includes(':') ? `[${q.address}]` : q.address;
  const lines = [`${q.protocol} ${host}:${q.port}${q.from ? ` from ${q.from}` : ''}: ${e.verdict}`];
  lines.push(`  matches    ${e.kind}${e.service ? ` of Service ${e.service}` : ''}${e.scheduler ? `, scheduler ${e.scheduler}` : ''}`);
  if (e.endpoints.length) {
    lines.push(`  endpoints  ${e.endpoints.length}`);
    for (const p of e.endpoints) {
      const h = p.address.includes(':') ? `[${p.address}]` : p.address;
      const share = p.share !== undefined ? ` ${(p.share * 100).toFixed(0)}%` : '';
      const w = p.weight !== undefined ? ` weight ${p.weight}` : '';
      const conns = p.activeConns !== undefined ? ` (${p.activeConns} active, ${p.inactiveConns} inactive)` : '';
      lines.push(`    -> ${h}:${p.port}${share}${w}${conns}`);
    }
  }
  if (e.socket) {
    const eps = e.socket.endpoints.map((p) => `${p.address.includes(':') ? `[${p.address}]` : p.address}:${p.port}${p.share !== undefined ? ` ${(p.share * 100).toFixed(0)}%` : ''}`);
    lines.push(`  on node    ${e.socket.verdict} at connect()${eps.length ? `: ${eps.join(', ')}` : ''} (${e.socket.why})`);
  }
  for (const w of e.why) lines.push(`  why        ${w}`);
  for (const w of e.warnings ?? []) lines.push(`  warning    ${w}`);
  return lines.join('\n');
}
