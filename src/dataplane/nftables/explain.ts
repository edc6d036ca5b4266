// `explain` for the nftables mode. The verdict, the endpoints and the masquerade are what the kernel's own rules
// do with the flow's first packet: packet-path.ts runs svcplane's table as dumped, in the order the kernel runs it
// (no-endpoint rejects and drops before DNAT, NodePorts only where the rules' `fib daddr type local` and address
// matches let them, the masquerade marks, the Local-policy short-circuit for this node's pods and the node). The
// words come from the elements those rules found: the Service port a count or no-endpoint element names, the
// reasons its comment records (policy, topology, termination, weights), a remembered sessionAffinity entry, and the
// loadBalancerSourceRanges of the address. Without --from, the flow is told for a client outside the cluster, and
// for this node's pods and the node itself where their answer differs.
import type { ExplainedEndpoint, Explanation, FlowQuery } from '../explain';
import { applyHooks } from './explain-hooks';
import { asProgrammed, tableDrift } from './drift';
import type { ForeignChain } from './foreign';
import { IPPROTO, NFPROTO_IPV4 } from './netlink/constants';
import type { ElementState, TableState } from './objects';
import { type PathOutcome, walkNewConnection } from './packet-path';
import { clusterCIDRsOf, elementOf as get, firewallRangesIn, hasElement as has } from './readback';
import { AFFINITY_SETS, CHAINS, SETS } from './rules/names';
import { PICK, countOf } from './rules/picks';
import { addrProtoPortKey, protoPortKey } from './rules/keys';
import { splitComment } from './status';
import { bytesToIp, cidrContains, ipToBytes } from '../../model/ip';

const PROTO = IPPROTO as Record<string, number>;
const VERDICT: Record<PathOutcome['fate'], Explanation['verdict']> = { dnat: 'forwarded', rejected: 'rejected', dropped: 'dropped', untouched: 'not a Service' };
/** Slot maps -> the count maps that go with them (rules/picks.ts PICK). */
const COUNTS_OF: Record<string, string> = Object.fromEntries(Object.values(PICK).map((k) => [k.slots, k.counts]));
const NODEPORT_SETS = new Set<string>([SETS.serviceNodePorts, SETS.localNodePorts, SETS.noEndpointNodePorts, SETS.dropNodePorts]);
const LOCAL_VIEWS = new Set<string>([SETS.localIPs, SETS.localNodePorts]);
/** Addresses no cluster uses (RFC 5737, 3849): the client "outside the cluster" when --from is not given. */
const OUTSIDE_CANDIDATES: Record<4 | 6, string[]> = { 4: ['192.0.2.1', '198.51.100.1', '203.0.113.1'], 6: ['2001:db8::1', '2001:db8:1::1'] };


/** What a source is, in words, as svcplane's rules tell sources apart. */
interface Source {
  address: string;
  label: string;
  given: boolean;
}

/** The walk's outcomes summed up: the likeliest verdict, its path, and the endpoints with their shares. */
interface Walked {
  verdict: Explanation['verdict'];
  /** The likeliest outcome of that verdict (its rules and the elements they found). */
  path: PathOutcome;
  endpoints: ExplainedEndpoint[];
  /** Masqueraded by the mark rule (not only as a hairpin). */
  masquerade: boolean;
  /** Endpoints reached as themselves (hairpin: masqueraded). */
  hairpin: string[];
  /** Other verdicts some new connections get, with their share. */
  others: Array<{ verdict: Explanation['verdict']; share: number }>;
  unknown: string[];
}

function walk(t: TableState, q: FlowQuery, from: string, nodeAddresses: string[], iifname?: string): Walked {
  const outcomes = walkNewConnection(t, { saddr: from, daddr: q.address, protocol: PROTO[q.protocol], dport: q.port, iifname }, { isLocal: (a) => nodeAddresses.includes(a) });
  const byFate = new Map<PathOutcome['fate'], number>();
  for (const o of outcomes) byFate.set(o.fate, (byFate.get(o.fate) ?? 0) + o.probability);
  const [fate] = [...byFate].sort((a, b) => b[1] - a[1])[0];
  const path = outcomes.find((o) => o.fate === fate)!;
  // Shares as counts of equally likely outcomes where they are (numgen's slots), so 2 of 3 slots is exactly 2/3.
  const equal = outcomes.every((o) => o.probability === outcomes[0].probability);
  const eps = new Map<string, ExplainedEndpoint & { n: number; p: number }>();
  for (const o of outcomes) {
    if (o.fate !== 'dnat' || !o.endpoint) continue;
    const id = `${o.endpoint.address}|${o.endpoint.port}`;
    const e = eps.get(id) ?? { ...o.endpoint, n: 0, p: 0 };
    e.n++;
    e.p += o.probability;
    eps.set(id, e);
  }
  const slots = path.matched.flatMap((m) => m.found).find((f) => COUNTS_OF[f.set]);
  const countSet = slots ? COUNTS_OF[slots.set] : undefined;
  const countKey = slots?.element.key.subarray(0, slots.element.key.length - 4);
  const countEl = countSet && countKey ? get(t, countSet, countKey) : undefined;
  const count = countEl?.data ? countOf(countEl.data).count : undefined;
  const endpoints = [...eps.values()].map(({ n, p, ...e }) => {
    const share = equal ? n / outcomes.length : p;
    return { ...e, share, ...(count !== undefined && eps.size !== count && path.matched.every((m) => !m.found.some((f) => isAffinity(f.set))) ? { weight: Math.round(share * count) } : {}) };
  });
  const masqueradeRule = (o: PathOutcome) => o.matched.find((m) => m.action === 'masquerade');
  return {
    verdict: VERDICT[fate],
    path,
    endpoints,
    masquerade: outcomes.some((o) => { const m = masqueradeRule(o); return m !== undefined && !m.found.some((f) => f.set === SETS.hairpin); }),
    hairpin: outcomes.filter((o) => masqueradeRule(o)?.found.some((f) => f.set === SETS.hairpin) && o.endpoint).map((o) => `${o.endpoint!.address}:${o.endpoint!.port}`),
    others: [...byFate].filter(([f]) => f !== fate).map(([f, share]) => ({ verdict: VERDICT[f], share })),
    unknown: [...new Set(outcomes.flatMap((o) => o.unknown))],
  };
}

const isAffinity = (set: string) => set === AFFINITY_SETS.ip || set === AFFINITY_SETS.nodeport;

/** What svcplane's sets say the destination is, whatever the path: for naming it when no rule on the path does. */
function identify(t: TableState, q: FlowQuery, key: Buffer, pk: Buffer, toNode: boolean): { kind: Explanation['kind']; service?: string } {
  const addressKind = (): Explanation['kind'] =>
    has(t, SETS.externalIPs, key) || has(t, SETS.localPolicyIPs, key) || !has(t, SETS.clusterIPs, ipToBytes(q.address)) ? 'External' : 'ClusterIP';
  for (const set of [SETS.noEndpointServices, SETS.dropServices, SETS.serviceIPs]) {
    const e = get(t, set, key);
    if (e) return { kind: set === SETS.dropServices ? 'ClusterIP' : addressKind(), service: splitComment(e.comment).service };
  }
  if (toNode) {
    for (const set of [SETS.noEndpointNodePorts, SETS.serviceNodePorts]) {
      const e = get(t, set, pk);
      if (e) return { kind: 'NodePort', service: splitComment(e.comment).service };
    }
  }
  if (has(t, SETS.clusterIPs, ipToBytes(q.address))) return { kind: 'unused ClusterIP port' };
  return { kind: 'none' };
}

/** The flow against svcplane's table: verdict, endpoints and masquerade by the rules, then why in words. */
export function explainFromRules(t: TableState | undefined, q: FlowQuery, nodeAddresses: string[]): Explanation {
  const out: Explanation = { flow: q, kind: 'none', verdict: 'not a Service', endpoints: [], why: [] };
  if (!t) {
    out.why.push('svcplane has no table for this address family');
    return out;
  }
  const family: 4 | 6 = t.family === NFPROTO_IPV4 ? 4 : 6;
  const cidrs = clusterCIDRsOf(t).filter((c) => c.includes(':') === (family === 6));
  const inCluster = (a: string) => cidrs.some((c) => cidrContains(c, a));
  const label = (a: string) => nodeAddresses.includes(a) ? 'this node' : q.fromInterface !== undefined ? `arriving on ${q.fromInterface}` : inCluster(a) ? 'a pod (in the cluster CIDRs)' : cidrs.length ? 'outside the cluster' : 'not this node (no cluster CIDR tells pods apart)';
  const outside = OUTSIDE_CANDIDATES[family].find((a) => !nodeAddresses.includes(a) && !inCluster(a)) ?? OUTSIDE_CANDIDATES[family][0];
  const src: Source = q.from !== undefined ? { address: q.from, label: label(q.from), given: true } : { address: outside, label: 'outside the cluster', given: false };
  // The interface the client's traffic arrives on (pods told by interface): --from-interface; the client outside
  // the cluster assumed when --from is not given comes on one no pod uses.
  const w = walk(t, q, src.address, nodeAddresses, q.fromInterface ?? (q.from === undefined ? '' : undefined));
  describe(t, q, w, src, nodeAddresses, out);
  if (q.from === undefined) otherSources(t, q, w, nodeAddresses, cidrs, out);
  if (w.unknown.length) out.warnings = [...(out.warnings ?? []), ...w.unknown.map((x) => `svcplane cannot evaluate ${x}: taken as not matching`)];
  if (w.unknown.some((x) => x.startsWith('meta'))) out.warnings!.push('pods are told by the interface their traffic arrives on (detectLocalMode BridgeInterface / InterfaceNamePrefix): give --from-interface');
  return out;
}

function describe(t: TableState, q: FlowQuery, w: Walked, src: Source, nodeAddresses: string[], out: Explanation): void {
  const proto = PROTO[q.protocol];
  const key = addrProtoPortKey(q.address, proto, q.port);
  const pk = protoPortKey(proto, q.port);
  const toNode = nodeAddresses.includes(q.address);
  const decided = w.path.matched[w.path.matched.length - 1];
  // Elements the matched rules found on the way (a rule that did not match found nothing): the check that jumped
  // to the reject chain, the drop, the pick rule.
  const found = w.path.matched.flatMap((m) => m.found);
  const foundIn = (set: string) => found.find((f) => f.set === set)?.element;
  const named = (e: ElementState | undefined) => splitComment(e?.comment).service || undefined;
  const id = identify(t, q, key, pk, toNode);
  out.verdict = w.verdict;
  out.endpoints = w.endpoints;

  const fw = firewallRangesIn(t, key, q.from);
  const fwDropped = w.verdict === 'dropped' && foundIn(SETS.firewallIPs) !== undefined;
  const fwVerdict = !src.given ? (fwDropped ? ': a client outside them is dropped' : '') : fwDropped ? `: ${q.from} is not in them, dropped` : `: ${q.from} is allowed`;
  if (fw) out.why.push(`loadBalancerSourceRanges ${fw.ranges.join(', ') || '(none of this family)'}${fwVerdict}`);
  const localLine = (view: string) => `externalTrafficPolicy Local, source is ${src.label}: ${view}`;

  if (w.verdict === 'rejected') {
    const none = foundIn(SETS.noEndpointServices) ?? foundIn(SETS.noEndpointNodePorts);
    if (none) {
      out.kind = foundIn(SETS.noEndpointNodePorts) ? 'NodePort' : id.kind;
      out.service = named(none);
      out.why.push('no endpoint is ready or serving: new connections are refused at once (TCP reset, ICMP port unreachable)');
    } else if (foundIn(SETS.clusterIPs)) {
      out.kind = id.kind;
      if (id.service) out.service = id.service;
      out.why.push(id.kind === 'unused ClusterIP port'
        ? `${q.address} is a ClusterIP, but no Service port uses ${q.protocol} ${q.port}: rejected`
        : `not DNATed, so ${q.address} is refused as a ClusterIP no rule sent anywhere`);
    } else {
      out.kind = id.kind;
      if (id.service) out.service = id.service;
      out.why.push(`refused by rule ${decided?.index} of chain ${decided?.chain}`);
    }
    return;
  }
  if (w.verdict === 'dropped') {
    const itp = foundIn(SETS.dropServices);
    const etp = foundIn(SETS.dropExternal) ?? foundIn(SETS.dropNodePorts);
    out.kind = itp ? 'ClusterIP' : foundIn(SETS.dropNodePorts) ? 'NodePort' : id.kind === 'unused ClusterIP port' ? 'none' : id.kind;
    const service = named(itp ?? etp) ?? id.service;
    if (service) out.service = service;
    if (itp) out.why.push('internalTrafficPolicy Local, and this node has none of the endpoints: dropped');
    else if (etp) {
      out.why.push(localLine('this node\'s endpoints, source kept'));
      out.why.push(foundIn(SETS.dropExternal) ? 'this node has none of the endpoints: dropped (the load balancer should send elsewhere)' : 'this node has none of the endpoints: dropped');
    } else if (decided?.chain === CHAINS.clusterIPsCheck) {
      out.why.push(`${q.address} is inside the Service CIDRs, but no Service holds it: dropped (an unallocated ClusterIP, as kube-proxy drops it)`);
    } else if (!fwDropped && !w.path.policyDrop) out.why.push(`dropped by rule ${decided?.index} of chain ${decided?.chain}`);
    return;
  }
  if (w.verdict === 'not a Service') {
    if (id.kind === 'NodePort') {
      out.why.push(`${q.address} is a node address, but NodePorts are not served on it (--nodeport-addresses; never on loopback): ${q.protocol} ${q.port} is a NodePort of ${id.service}`);
    } else if (id.kind !== 'none' && id.kind !== 'unused ClusterIP port') {
      out.kind = id.kind;
      out.service = id.service;
    } else if (toNode) out.why.push(`${q.address} is a node address, but no NodePort ${q.protocol} ${q.port} is programmed`);
    else out.why.push(`${q.address} is not a Service address svcplane programs`);
    return;
  }

  // Forwarded: the pick (or affinity) rule that DNATed found the endpoint's slot; its count element names the port.
  const dnat = w.path.matched.find((m) => m.action === 'dnat')!;
  const slot = dnat.found.find((f) => COUNTS_OF[f.set]);
  const countSet = slot ? COUNTS_OF[slot.set] : SETS.serviceIPs;
  const nodePort = NODEPORT_SETS.has(countSet);
  const countEl = get(t, countSet, nodePort ? pk : key);
  const s = splitComment(countEl?.comment);
  out.kind = nodePort ? 'NodePort' : id.kind === 'unused ClusterIP port' || id.kind === 'none' ? 'External' : id.kind;
  out.service = s.service || id.service;
  const localPolicy = nodePort ? has(t, SETS.localPolicyNodePorts, pk) : has(t, SETS.localPolicyIPs, key);
  if (localPolicy) {
    out.why.push(LOCAL_VIEWS.has(countSet) ? localLine('this node\'s endpoints, source kept') : localLine(`short-circuited to every endpoint${w.masquerade ? ', masqueraded' : ''}`));
  } else if (out.kind === 'ClusterIP') {
    if (src.given) out.why.push(`source is ${src.label}${w.masquerade ? ': masqueraded' : ': source kept'}`);
  } else out.why.push(`externalTrafficPolicy Cluster: ${w.masquerade ? 'masqueraded' : 'source kept'}, every endpoint`);
  out.masquerade = w.masquerade;
  out.why.push(...s.why);
  if (!s.why.length) out.why.push('every ready endpoint');
  const affinity = countEl?.data ? countOf(countEl.data).affinitySeconds : undefined;
  if (affinity) {
    out.why.push(`sessionAffinity ClientIP, ${affinity} s`);
    const remembered = dnat.found.find((f) => isAffinity(f.set))?.element;
    if (remembered && src.given) {
      const k = remembered.key.readUInt32LE(remembered.key.length - 4);
      const ep = out.endpoints[0];
      out.why.push(`${q.from} is remembered on slot ${k}${ep ? ` (${ep.address}:${ep.port})` : ''}${remembered.expiresMs !== undefined ? `, for ${Math.round(remembered.expiresMs / 1000)} s more` : ''}`);
    }
  }
  if (src.given) for (const h of w.hairpin) out.why.push(`${h} is the client itself: masqueraded (hairpin)`);
  for (const o of w.others) out.why.push(`${Math.round(o.share * 100)}% of new connections: ${o.verdict}`);
}

/** Without --from: this node's pods and the node itself, where they get another answer than a client outside. */
function otherSources(t: TableState, q: FlowQuery, outside: Walked, nodeAddresses: string[], cidrs: string[], out: Explanation): void {
  const family = t.family === NFPROTO_IPV4 ? 4 : 6;
  const sources: Array<[string, string | undefined]> = [
    ['a pod (in the cluster CIDRs)', cidrs[0] ? podAddress(cidrs[0], nodeAddresses) : undefined],
    ['this node', nodeAddresses.find((a) => a.includes(':') === (family === 6))],
  ];
  const sameMasquerade: boolean[] = [];
  const summary = (w: Walked) => w.verdict === 'forwarded' ? `forwarded to ${w.endpoints.map((e) => e.address).sort().join(', ')}${w.masquerade ? ', masqueraded' : ''}` : w.verdict;
  for (const [what, address] of sources) {
    if (!address) continue;
    const w = walk(t, q, address, nodeAddresses);
    sameMasquerade.push(w.masquerade === outside.masquerade);
    if (summary(w) !== summary(outside)) out.why.push(`from ${what}: ${summary(w)}`);
  }
  if (out.why.some((l) => l.startsWith('from '))) out.why.unshift('no --from: told for a client outside the cluster; other sources where they differ');
  if (out.verdict === 'forwarded' && !sameMasquerade.every(Boolean)) delete out.masquerade;
}

/** An address in the cluster CIDR that is not the node's (the node often holds the first one: the pod gateway). */
function podAddress(cidr: string, nodeAddresses: string[]): string | undefined {
  const [net] = cidr.split('/');
  for (let k = 2; k < 12; k++) {
    const b = ipToBytes(net);
    b[b.length - 1] += k;
    const a = bytesToIp(b);
    if (cidrContains(cidr, a) && !nodeAddresses.includes(a)) return a;
  }
  return undefined;
}

/**
 * Explains a flow against the nftables mode's table of the destination's family, as the kernel runs it; when the
 * table's flags or base chains are not as svcplane programs them, says what its rules would have done and why the
 * kernel does otherwise (explain-hooks.ts, with other tables' chains that may run first: `foreign`).
 */
export function explainNftables(t: TableState | undefined, q: FlowQuery, nodeAddresses: string[], foreign: ForeignChain[] = []): Explanation {
  const e = explainFromRules(t, q, nodeAddresses);
  const drift = t ? tableDrift(t) : undefined;
  const intended = t && drift && (drift.dormant || drift.chains.length) ? explainFromRules(asProgrammed(t), q, nodeAddresses) : undefined;
  const fromNode = q.from !== undefined && nodeAddresses.includes(q.from);
  applyHooks(e, intended, drift, fromNode, foreign);
  if (e.warnings?.length && q.from === undefined) e.warnings.push('the client was taken to be off the node (--from tells which path a flow takes)');
  return e;
}
