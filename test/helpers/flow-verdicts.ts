// What real connections say happened to a flow, and whether `svcplane explain` said the same (the comparison of
// test/kernel/explain-agrees.test.ts). The sandbox makes every fate visible: a refusal (TCP reset, ICMP port
// unreachable) is ECONNREFUSED at once; a drop is a timeout; a flow svcplane leaves alone is answered by a daemon on
// the node when its destination is a node address, and vanishes in the sink namespace (a timeout) otherwise.
import type { FlowResult } from '../../scripts/lib/traffic';
import type { Explanation } from '../../src/dataplane/explain';

export type Observed =
  | { fate: 'answered'; by: string[]; sources: string[] }
  | { fate: 'refused' }
  | { fate: 'timeout' }
  /** A local sender's datagram dropped by a rule at output: sendmsg() fails with EPERM, drop or reject alike. */
  | { fate: 'blocked' }
  | { fate: 'mixed'; errors: Record<string, number>; by: string[] };

const TIMEOUTS = new Set(['ETIMEDOUT', 'EREPLYTIMEOUT']);

/** The fate of a flow's exchanges: all answered, all refused, all timed out, or a mix (which is reported). */
export function observe(r: FlowResult): Observed {
  const errors = Object.keys(r.errors);
  const by = Object.keys(r.counts).sort();
  if (r.ok > 0 && errors.length === 0) return { fate: 'answered', by, sources: Object.keys(r.sources).sort() };
  if (r.ok === 0 && errors.length === 1 && errors[0] === 'ECONNREFUSED') return { fate: 'refused' };
  if (r.ok === 0 && errors.every((e) => TIMEOUTS.has(e))) return { fate: 'timeout' };
  if (r.ok === 0 && errors.length === 1 && errors[0] === 'EPERM') return { fate: 'blocked' };
  return { fate: 'mixed', errors: r.errors, by };
}

export function describeObserved(o: Observed): string {
  switch (o.fate) {
    case 'answered': return `answered by ${o.by.join(', ')} (source seen: ${o.sources.join(', ')})`;
    case 'refused': return 'refused';
    case 'timeout': return 'timed out';
    case 'blocked': return 'blocked at output (EPERM)';
    case 'mixed': return `mixed: ${o.by.length ? `answered by ${o.by.join(', ')}, ` : ''}errors ${JSON.stringify(o.errors)}`;
  }
}

export interface FlowContext {
  /** The client's address as the node sees it (explain's --from). */
  from: string;
  /** Backend address -> the name it answers with (be0, be1...). */
  backendNames: Map<string, string>;
  /** The name the node's own daemon answers with, and whether the destination is one of the node's addresses. */
  nodeDaemon: string;
  toNodeAddress: boolean;
  /** The client's own name when it is a backend (a pod reaching itself is masqueraded: hairpin). */
  clientName?: string;
  /** The node's address on the pod network: what a masqueraded connection comes from. */
  masqueradeSource: string;
  /** The client is the node itself: its packets meet the rules at output, where a drop fails the send (EPERM). */
  localSender: boolean;
}

/**
 * Whether explain's answer agrees with what the connections did; undefined when it does, else the difference in
 * words. The caller sends enough exchanges to reach every endpoint explain lists (or the Service has), so an
 * endpoint listed but never reached counts as a difference.
 */
export function disagreement(e: Explanation, o: Observed, ctx: FlowContext): string | undefined {
  const listed = e.endpoints.filter((p) => (p.share ?? 1) > 0).map((p) => ctx.backendNames.get(p.address) ?? p.address).sort();
  switch (e.verdict) {
    case 'rejected':
      return o.fate === 'refused' || (o.fate === 'blocked' && ctx.localSender) ? undefined : 'explain says rejected';
    case 'dropped':
      return o.fate === 'timeout' || (o.fate === 'blocked' && ctx.localSender) ? undefined : 'explain says dropped';
    case 'not a Service':
      if (ctx.toNodeAddress) return o.fate === 'answered' && o.by.join() === ctx.nodeDaemon ? undefined : 'explain says not a Service (the node itself would answer)';
      return o.fate === 'timeout' ? undefined : 'explain says not a Service (nothing would answer)';
    case 'forwarded': {
      if (o.fate !== 'answered') return `explain says forwarded to ${listed.join(', ') || 'nothing'}`;
      const extra = o.by.filter((b) => !listed.includes(b));
      if (extra.length) return `explain says forwarded to ${listed.join(', ')}; ${extra.join(', ')} answered too`;
      const missing = listed.filter((b) => !o.by.includes(b));
      if (missing.length) return `explain says forwarded to ${listed.join(', ')}; ${missing.join(', ')} never answered`;
      return masqueradeDisagreement(e, o, ctx);
    }
  }
}

/**
 * The source the endpoints saw against explain's masquerade: the node's pod-network address when masqueraded, the
 * client's own otherwise. Told apart only by the address seen, so checked when an endpoint other than the client
 * answered (an endpoint reaching itself is masqueraded whatever the flow: hairpin).
 */
function masqueradeDisagreement(e: Explanation, o: Observed & { fate: 'answered' }, ctx: FlowContext): string | undefined {
  if (ctx.clientName && o.by.includes(ctx.clientName)) return undefined;
  const want = e.masquerade ? ctx.masqueradeSource : ctx.from;
  if (o.sources.length === 1 && o.sources[0] === want) return undefined;
  return `explain says ${e.masquerade ? 'masqueraded' : 'source kept'}; the endpoints saw ${o.sources.join(', ')}`;
}
