// `svcplane explain`: what the kernel does with one flow, read from what is programmed (pure: the caller dumps).
// It answers which Service port a destination matches, which endpoints a new connection from a given source can
// reach and why: the policy (the Local views and drops), topology, termination and weights (as the count
// element's comment records them when the sync chose the endpoints), loadBalancerSourceRanges, the masquerade
// decision and a remembered sessionAffinity entry. Nothing comes from svcplane's memory: a flow is explained the
// same by a fresh process as by the agent that programmed it. The nftables mode's answer is the kernel's rules run
// on the flow's first packet (explain-nftables.ts); the IPVS mode's is read from the virtual services (below).
import { cidrContains, bytesToIp, ipToBytes } from './model/ip';
import type { Protocol } from './model/types';
import type { RealServerState, VirtualServiceState } from './netlink/ipvs';
import { describeVirtualService } from './dataplane/ipvs/describe';
import { IPVS_SETS } from './dataplane/ipvs/filter';
import { BITWISE, CMP, EXPR_NAME, LOOKUP, META, NFT_META_IIFNAME, PAYLOAD } from './dataplane/nftables/netlink/constants';
import { parseRuleBody } from './dataplane/nftables/netlink/expr';
import { attrString, attrU32 } from './native/recordStream';
import type { ElementState, TableState } from './dataplane/nftables/objects';
import { CHAINS, SETS } from './dataplane/nftables/ruleset';
import { firewallRanges } from './explain-nftables';

export { explainNftables } from './explain-nftables';

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
   * What may make the kernel do otherwise than the maps say: svcplane's table or base chains changed (dormant,
   * missing, policy drop), another table's rule at the same hook that may take the flow first (explain-hooks.ts).
   */
  warnings?: string[];
}

/** The CIDRs a rule matches its source address against (`saddr & mask == net`), as "net/bits". */
export function saddrCIDRsOf(exprs: ReturnType<typeof parseRuleBody>, saddrOffset: number): string[] {
  const out: string[] = [];
  for (let i = 0; i + 2 < exprs.length; i++) {
    if (attrString(exprs[i], EXPR_NAME) !== 'payload' || attrU32(exprs[i], PAYLOAD.OFFSET) !== saddrOffset) continue;
    const mask = exprs[i + 1].get(BITWISE.MASK);
    const net = exprs[i + 2].get(CMP.DATA);
    if (attrString(exprs[i + 1], EXPR_NAME) !== 'bitwise' || !mask || !net) continue;
    let bits = 0;
    for (const b of mask) for (let k = 7; k >= 0; k--) if (b & (1 << k)) bits++;
    out.push(`${bytesToIp(net)}/${bits}`);
  }
  return out;
}

/**
 * The cluster CIDRs (or the pod interface: "cbr0", "veth*") and masqueradeAll as the services chain holds them (the
 * ClusterIP masquerade rule).
 */
export function masqueradeSettings(t: TableState): { cidrs: string[]; all: boolean; podInterface?: string } {
  const addrLen = t.family === 2 ? 4 : 16;
  const saddrOffset = addrLen === 4 ? 12 : 8;
  for (const body of t.chains.get(CHAINS.services)?.rules ?? []) {
    const exprs = parseRuleBody(body);
    if (!exprs.some((e) => attrString(e, EXPR_NAME) === 'lookup' && attrString(e, LOOKUP.SET) === SETS.clusterIPs)) continue;
    const i = exprs.findIndex((e) => attrString(e, EXPR_NAME) === 'meta' && attrU32(e, META.KEY) === NFT_META_IIFNAME);
    const name = i >= 0 ? exprs[i + 1]?.get(CMP.DATA) : undefined;
    if (name) {
      // All 16 bytes (NUL-padded): a bridge's exact name; fewer: a prefix (ruleset.ts notFromPods).
      const text = name.toString('latin1').replace(/\0+$/, '');
      return { cidrs: [], all: false, podInterface: name.length === 16 ? text : `${text}*` };
    }
    const cidrs = saddrCIDRsOf(exprs, saddrOffset);
    return { cidrs, all: cidrs.length === 0 };
  }
  return { cidrs: [], all: false };
}

const has = (t: TableState, set: string, key: Buffer) => (t.elements.get(set) ?? new Map<string, ElementState>()).has(key.toString('latin1'));

/** The Service CIDRs the table drops unallocated addresses of (cluster-ips-check's drop rules, both modes). */
export function serviceCIDRsOf(t: TableState): string[] {
  const daddrOffset = t.family === 2 ? 16 : 24;
  return (t.chains.get(CHAINS.clusterIPsCheck)?.rules ?? []).flatMap((body) => saddrCIDRsOf(parseRuleBody(body), daddrOffset));
}

/** Explains a flow against IPVS (virtual services, real servers) and the nftables table beside it. */
export function explainIpvs(services: VirtualServiceState[], dests: RealServerState[][], t: TableState | undefined, q: FlowQuery, nodeAddresses: string[]): Explanation {
  const out: Explanation = { flow: q, kind: 'none', verdict: 'not a Service', endpoints: [], why: [] };
  const i = services.findIndex((s) => s.protocol === q.protocol && s.port === q.port && s.address === q.address);
  if (i < 0) {
    if (t && has(t, IPVS_SETS.clusterIPs, ipToBytes(q.address))) {
      out.kind = 'unused ClusterIP port';
      out.verdict = 'rejected';
      out.why.push(`${q.address} is a ClusterIP, but no Service port uses ${q.protocol} ${q.port}: rejected`);
    } else if (t && serviceCIDRsOf(t).some((c) => cidrContains(c, q.address))) {
      out.verdict = 'dropped';
      out.why.push(`${q.address} is inside the Service CIDRs, but no Service holds it: dropped (an unallocated ClusterIP, as kube-proxy drops it)`);
    } else out.why.push(`no virtual service of svcplane's is ${q.protocol} ${q.address}:${q.port}`);
    return out;
  }
  const vs = services[i];
  const d = describeVirtualService(t, q.protocol, q.address, q.port);
  out.kind = d.kind;
  out.scheduler = vs.scheduler;
  if (d.service) out.service = d.service;
  const masq = t ? masqueradeSettings(t) : { cidrs: [], all: false };
  const onPodInterface = (i: string, p: string) => (p.endsWith('*') ? i.startsWith(p.slice(0, -1)) : i === p);
  const fromPod = masq.podInterface !== undefined
    ? q.fromInterface !== undefined && onPodInterface(q.fromInterface, masq.podInterface)
    : q.from !== undefined && masq.cidrs.some((x) => cidrContains(x, q.from!));
  if (masq.podInterface !== undefined && q.fromInterface === undefined && q.from !== undefined && !nodeAddresses.includes(q.from)) {
    out.warnings = [...(out.warnings ?? []), `pods are told by the interface their traffic arrives on (${masq.podInterface}): give --from-interface`];
  }
  const fromNode = q.from !== undefined && nodeAddresses.includes(q.from);
  const fw = t && d.kind !== 'NodePort' ? firewallRanges(t, d.addressKey, q.from) : undefined;
  if (fw) out.why.push(`loadBalancerSourceRanges ${fw.ranges.join(', ') || '(none of this family)'}${fw.allowed === undefined ? '' : fw.allowed ? `: ${q.from} is allowed` : `: ${q.from} is not in them, dropped before IPVS`}`);
  if (d.policy) {
    out.masquerade = fromNode || undefined;
    out.why.push(q.from === undefined ? 'externalTrafficPolicy Local: source kept for clients from outside' : `externalTrafficPolicy Local, source is ${fromNode ? 'this node: masqueraded' : fromPod ? 'a pod: source kept' : 'outside the cluster: source kept'}`);
  }
  else if (d.kind === 'ClusterIP') {
    out.masquerade = masq.all || (q.from !== undefined && (masq.cidrs.length > 0 || masq.podInterface !== undefined) && !fromPod) || undefined;
    if (q.from !== undefined) out.why.push(`source is ${fromPod ? 'a pod (in the cluster CIDRs)' : 'not a pod'}${out.masquerade ? ': masqueraded' : ': source kept'}`);
  } else {
    out.masquerade = true;
    out.why.push('externalTrafficPolicy Cluster: masqueraded');
  }
  out.why.push(...d.why);
  const total = dests[i].reduce((n, r) => n + r.weight, 0);
  out.endpoints = dests[i].map((r) => ({
    address: r.address, port: r.port, weight: r.weight, activeConns: r.activeConns, inactiveConns: r.inactiveConns,
    ...(total > 0 && (vs.scheduler === 'rr' || vs.scheduler === 'wrr') ? { share: r.weight / total } : {}),
  }));
  const draining = dests[i].filter((r) => r.weight === 0).length;
  if (draining) out.why.push(`${draining} real server(s) at weight 0: draining (graceful termination), no new connections`);
  if (vs.flags & 1) out.why.push(`sessionAffinity ClientIP: IPVS persistence, ${vs.timeout} s`);
  if (d.reject) {
    out.verdict = 'rejected';
    out.why.push('no endpoint is ready or serving: refused at once');
  } else if (fw?.allowed === false) out.verdict = 'dropped';
  else if (d.drop && (!d.policy || (!fromPod && !fromNode))) {
    out.verdict = 'dropped';
    out.why.push(d.policy ? `this node has none of the endpoints: clients from outside are dropped${q.from === undefined ? ' (its pods get every endpoint)' : ''}` : 'internalTrafficPolicy Local, and this node has none of the endpoints: dropped');
  } else if (dests[i].length === 0) {
    // No table entry says why (a table from before, or changed behind svcplane's back): IPVS itself has no one.
    out.verdict = 'dropped';
    out.why.push('the virtual service has no real server: IPVS drops new connections');
  } else out.verdict = 'forwarded';
  return out;
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
  for (const w of e.why) lines.push(`  why        ${w}`);
  for (const w of e.warnings ?? []) lines.push(`  warning    ${w}`);
  return lines.join('\n');
}
