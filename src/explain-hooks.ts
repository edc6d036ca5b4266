// `explain`, second half: whether the packets of a flow reach svcplane's rules at all. The first half
// (explain.ts) reads the verdict from the maps; here it is checked against what decides whether those rules run
// (svcplane's table dormant, its base chains missing, moved or with policy drop: drift.ts) and against other
// tables' chains that may take the flow first (foreign.ts), all as dumped from the kernel.
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
import type { Explanation } from './explain';
import { type TableDrift, driftWarnings } from './dataplane/nftables/drift';
import { type ForeignChain, describeForeign } from './dataplane/nftables/foreign';
import { CHAINS } from './dataplane/nftables/ruleset';

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
 * Corrects `e` (the maps' verdict) for the hooks: `fromNode` says which path the flow takes, `drift` is svcplane's
 * table of the flow's family as checked by drift.ts, `foreign` the other tables' chains that run first.
 */
export function applyHooks(e: Explanation, drift: TableDrift | undefined, fromNode: boolean, foreign: ForeignChain[]): void {
  const warnings: string[] = [];
  const family = e.flow.address.includes(':') ? 6 : 4;
  const path = fromNode ? NODE_PATH : OFF_NODE_PATH;
  const svcplaneDecided = e.verdict !== 'not a Service';
  if (drift) {
    const onPath = { ...drift, chains: drift.chains.filter((c) => (path as readonly string[]).includes(c.chain)) };
    warnings.push(...driftWarnings(onPath));
    const r = roles(fromNode);
    const gone = (chain: string) => onPath.chains.some((c) => c.chain === chain && (c.problem === 'missing' || c.problem === 'moved'));
    const dropping = onPath.chains.filter((c) => c.problem === 'policy');
    if (drift.dormant && svcplaneDecided) {
      e.verdict = 'not a Service';
      e.why.push('svcplane\'s table is dormant: its rules do not see this flow, which the kernel routes as if there were no Service');
    } else if (e.verdict === 'forwarded' && gone(r.dnat)) {
      e.verdict = 'not a Service';
      e.why.push(`chain ${r.dnat} is not at its hook: nothing DNATs this flow to an endpoint`);
    } else if (e.verdict === 'rejected' && gone(e.kind === 'unused ClusterIP port' ? r.rejectUnusedPort : r.rejectNoEndpoints)) {
      e.verdict = 'not a Service';
      e.why.push('the chain that refuses it is not at its hook: nothing refuses this flow');
    } else if (e.verdict === 'forwarded') {
      // Filter chains drop whatever reaches their end; the DNAT chain accepts what it NATs; the masquerade chain
      // only what it masquerades.
      const drop = dropping.find((c) => c.want.type === 'filter' || (c.chain === CHAINS.natPostrouting && !e.masquerade));
      if (drop) {
        e.verdict = 'dropped';
        e.why.push(`chain ${drop.chain} has policy drop and ${drop.want.type === 'filter' ? 'no rule of it accepts this flow\'s packets' : 'does not masquerade this flow'}: dropped`);
      }
    }
  }
  for (const f of foreign) {
    if (f.ipFamilies.includes(family) && foreignHooks(fromNode).includes(f.hook)) warnings.push(describeForeign(f));
  }
  if (warnings.length) e.warnings = [...(e.warnings ?? []), ...warnings];
}
