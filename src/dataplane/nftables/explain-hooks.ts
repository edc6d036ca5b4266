// `explain`, second half: whether the packets of a flow reach svcplane's rules as svcplane hooked them. The first
// half (explain.ts) runs the table as the kernel holds it, so its verdict already follows a dormant table
// or a base chain missing, moved or with policy drop (drift.ts); here the verdict of the same rules hooked as every
// sync programs them (`intended`) tells what that changed, said in words, and the problems on the flow's path and
// other tables' chains that may take the flow first (foreign.ts) become warnings.
//
// The chains a flow's packets pass, by where the client is (a client not given is taken as off the node, the
// usual case, and said so):
//   from off the node (or a pod): prerouting (filter-prerouting, nat-prerouting: the DNAT), forward
//     (filter-forward), postrouting (nat-postrouting: masquerade); replies come back through prerouting and forward.
//   from the node itself: output (filter-output, nat-output: the DNAT, filter-output-post-dnat), postrouting;
//     replies through prerouting (filter-prerouting) and input.
// svcplane's filter chains never accept, so one with policy drop drops every packet it sees; its nat chains end
// a Service connection's first packet with its DNAT (nat-prerouting/output) or masquerade (nat-postrouting), so
// policy drop there drops what they do not NAT.
import type { Explanation } from '../explain';
import { type TableDrift, driftWarnings } from './drift';
import { type ForeignChain, describeForeign } from './foreign';
import { CHAINS } from './rules/names';

const OFF_NODE_PATH = [CHAINS.filterPrerouting, CHAINS.natPrerouting, CHAINS.filterForward, CHAINS.natPostrouting];
const NODE_PATH = [CHAINS.filterOutput, CHAINS.natOutput, CHAINS.filterOutputPostDnat, CHAINS.natPostrouting, CHAINS.filterPrerouting];

/** The chain that DNATs the flow, and the one that rejects it (by what it is rejected for), by where the client is. */
function roles(fromNode: boolean): { dnat: string; rejectNoEndpoints: string; rejectUnusedPort: string } {
  return fromNode
    ? { dnat: CHAINS.natOutput, rejectNoEndpoints: CHAINS.filterOutput, rejectUnusedPort: CHAINS.filterOutputPostDnat }
    : { dnat: CHAINS.natPrerouting, rejectNoEndpoints: CHAINS.filterPrerouting, rejectUnusedPort: CHAINS.filterForward };
}

/** Hooks the flow's packets pass where another table may take them first (foreign.ts: prerouting, output, forward). */
function foreignHooks(fromNode: boolean): string[] {
  return fromNode ? ['output'] : ['prerouting', 'forward'];
}

/**
 * Says why `e` (the kernel's verdict) differs from `intended` (the same rules with the table's flags and base chains
 * as programmed; undefined when they are), and warns of what is not as programmed on the flow's path: `fromNode`
 * says which path the flow takes, `drift` is svcplane's table of the flow's family as checked by drift.ts,
 * `foreign` the other tables' chains that run first.
 */
export function applyHooks(e: Explanation, intended: Explanation | undefined, drift: TableDrift | undefined, fromNode: boolean, foreign: ForeignChain[]): void {
  const warnings: string[] = [];
  const family = e.flow.address.includes(':') ? 6 : 4;
  const path = fromNode ? NODE_PATH : OFF_NODE_PATH;
  if (drift) {
    const onPath = { ...drift, chains: drift.chains.filter((c) => (path as readonly string[]).includes(c.chain)) };
    warnings.push(...driftWarnings(onPath));
    if (intended && intended.verdict !== e.verdict) explainDifference(e, intended, drift, onPath.chains, roles(fromNode));
  }
  for (const f of foreign) {
    if (f.ipFamilies.includes(family) && foreignHooks(fromNode).includes(f.hook)) warnings.push(describeForeign(f));
  }
  if (warnings.length) e.warnings = [...(e.warnings ?? []), ...warnings];
}

/** The Service the flow is for (as the programmed hooks would see it), and the problem that changed its fate. */
function explainDifference(e: Explanation, intended: Explanation, drift: TableDrift, onPath: TableDrift['chains'], r: ReturnType<typeof roles>): void {
  if (e.kind === 'none' || e.kind === 'unused ClusterIP port') e.kind = intended.kind;
  e.service ??= intended.service;
  const gone = (chain: string) => onPath.some((c) => c.chain === chain && (c.problem === 'missing' || c.problem === 'moved'));
  const dropping = onPath.find((c) => c.problem === 'policy' && (c.want.type === 'filter' || (c.chain === CHAINS.natPostrouting && !e.masquerade)));
  if (drift.dormant) e.why.push('svcplane\'s table is dormant: its rules do not see this flow, which the kernel routes as if there were no Service');
  else if (intended.verdict === 'forwarded' && gone(r.dnat)) e.why.push(`chain ${r.dnat} is not at its hook: nothing DNATs this flow`);
  else if (intended.verdict === 'rejected' && gone(intended.kind === 'unused ClusterIP port' ? r.rejectUnusedPort : r.rejectNoEndpoints)) e.why.push('the chain that refuses it is not at its hook: nothing refuses this flow');
  else if (e.verdict === 'dropped' && dropping) e.why.push(`chain ${dropping.chain} has policy drop and ${dropping.want.type === 'filter' ? 'no rule of it accepts this flow\'s packets' : 'does not masquerade this flow'}: dropped`);
  else e.why.push(`svcplane's chains are not hooked as it programs them (see the warnings): as programmed, this flow would be ${intended.verdict}`);
}
