// `svcplane explain`: what the kernel does with one flow, read from what is programmed (pure: the caller dumps).
// It answers which Service port a destination matches, which endpoints a new connection from a given source can
// reach and why: the policy (the Local views and drops), topology, termination and weights (as the count
// element's comment records them when the sync chose the endpoints), loadBalancerSourceRanges, the masquerade
// decision and a remembered sessionAffinity entry. Nothing comes from svcplane's memory: a flow is explained the
// same by a fresh process as by the agent that programmed it.
import { bytesToIp, cidrContains, ipToBytes } from './model/ip';
import type { Protocol } from './model/types';
import type { RealServerState, VirtualServiceState } from './dataplane/ipvs/netlink';
import { describeVirtualService } from './dataplane/ipvs/describe';
import { IPVS_SETS } from './dataplane/ipvs/filter';
import { BITWISE, CMP, EXPR_NAME, IPPROTO, LOOKUP, PAYLOAD } from './dataplane/nftables/netlink/constants';
import { parseRuleBody } from './dataplane/nftables/netlink/expr';
import { attrString, attrU32 } from './dataplane/nftables/netlink/records';
import type { ElementState, TableState } from './dataplane/nftables/objects';
import { AFFINITY_SETS, CHAINS, SETS, addrProtoPortKey, countOf, protoPortKey } from './dataplane/nftables/ruleset';
import { splitComment } from './dataplane/nftables/status';
import { tableDrift } from './dataplane/nftables/drift';
import type { ForeignChain } from './dataplane/nftables/foreign';
import { applyHooks } from './explain-hooks';

export interface FlowQuery {
  protocol: Protocol;
  address: string;
  port: number;
  /** The client's address; without it, source-dependent answers are given for each kind of source. */
  from?: string;
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

const PROTO = IPPROTO as Record<string, number>;

/** The cluster CIDRs and masqueradeAll as the services chain holds them (the ClusterIP masquerade rule). */
export function masqueradeSettings(t: TableState): { cidrs: string[]; all: boolean } {
  const addrLen = t.family === 2 ? 4 : 16;
  const saddrOffset = addrLen === 4 ? 12 : 8;
  for (const body of t.chains.get(CHAINS.services)?.rules ?? []) {
    const exprs = parseRuleBody(body);
    if (!exprs.some((e) => attrString(e, EXPR_NAME) === 'lookup' && attrString(e, LOOKUP.SET) === SETS.clusterIPs)) continue;
    const cidrs: string[] = [];
    for (let i = 0; i + 2 < exprs.length; i++) {
      if (attrString(exprs[i], EXPR_NAME) !== 'payload' || attrU32(exprs[i], PAYLOAD.OFFSET) !== saddrOffset) continue;
      const mask = exprs[i + 1].get(BITWISE.MASK);
      const net = exprs[i + 2].get(CMP.DATA);
      if (attrString(exprs[i + 1], EXPR_NAME) !== 'bitwise' || !mask || !net) continue;
      let bits = 0;
      for (const b of mask) for (let k = 7; k >= 0; k--) if (b & (1 << k)) bits++;
      cidrs.push(`${bytesToIp(net)}/${bits}`);
    }
    return { cidrs, all: cidrs.length === 0 };
  }
  return { cidrs: [], all: false };
}

const elems = (t: TableState, set: string) => t.elements.get(set) ?? new Map<string, ElementState>();
const has = (t: TableState, set: string, key: Buffer) => elems(t, set).has(key.toString('latin1'));
const get = (t: TableState, set: string, key: Buffer) => elems(t, set).get(key.toString('latin1'));

function slotEndpoints(t: TableState, slots: string, key: Buffer, count: number, addrLen: number): ExplainedEndpoint[] {
  const all = elems(t, slots);
  const by = new Map<string, ExplainedEndpoint & { n: number }>();
  for (let k = 0; k < count; k++) {
    const sk = Buffer.alloc(key.length + 4);
    key.copy(sk);
    sk.writeUInt32LE(k, key.length);
    const d = all.get(sk.toString('latin1'))?.data;
    if (!d) continue;
    const address = bytesToIp(d.subarray(0, addrLen));
    const port = d.readUInt16BE(addrLen);
    const id = `${address}|${port}`;
    const e = by.get(id);
    if (e) e.n++;
    else by.set(id, { address, port, n: 1 });
  }
  const out = [...by.values()].map(({ n, ...e }) => ({ ...e, share: count ? n / count : 0, ...(by.size !== count ? { weight: n } : {}) }));
  return out;
}

/** The source ranges an LB address accepts, and whether `from` is in one. */
function firewall(t: TableState, key: Buffer, from: string | undefined): { ranges: string[]; allowed?: boolean } | undefined {
  if (!has(t, SETS.firewallIPs, key)) return undefined;
  const ranges: string[] = [];
  let allowed: boolean | undefined = from === undefined ? undefined : false;
  const fromBytes = from ? ipToBytes(from) : undefined;
  for (const e of elems(t, SETS.firewallAllow).values()) {
    if (!e.keyEnd || !e.key.subarray(0, key.length).equals(key)) continue;
    const lo = e.key.subarray(key.length);
    const hi = e.keyEnd.subarray(key.length);
    let bits = 0;
    for (let i = 0; i < lo.length; i++) {
      const x = lo[i] ^ hi[i];
      for (let k = 7; k >= 0; k--) if (!(x & (1 << k))) bits++; else break;
      if (x !== 0) break;
    }
    ranges.push(`${bytesToIp(lo)}/${bits}`);
    if (fromBytes && Buffer.compare(fromBytes, lo) >= 0 && Buffer.compare(fromBytes, hi) <= 0) allowed = true;
  }
  return { ranges, allowed };
}

/**
 * Explains a flow against the nftables mode's table of the destination's family: the maps' answer, then whether
 * the flow's packets reach svcplane's rules at all (its base chains, `foreign`: other tables' chains that run first).
 */
export function explainNftables(t: TableState | undefined, q: FlowQuery, nodeAddresses: string[], foreign: ForeignChain[] = []): Explanation {
  const e = explainFromMaps(t, q, nodeAddresses);
  const fromNode = q.from !== undefined && nodeAddresses.includes(q.from);
  applyHooks(e, t ? tableDrift(t) : undefined, fromNode, foreign);
  if (e.warnings?.length && q.from === undefined) e.warnings.push('the client was taken to be off the node (--from tells which path a flow takes)');
  return e;
}

function explainFromMaps(t: TableState | undefined, q: FlowQuery, nodeAddresses: string[]): Explanation {
  const out: Explanation = { flow: q, kind: 'none', verdict: 'not a Service', endpoints: [], why: [] };
  if (!t) {
    out.why.push('svcplane has no table for this address family');
    return out;
  }
  const addrLen = t.family === 2 ? 4 : 16;
  const proto = PROTO[q.protocol];
  const key = addrProtoPortKey(q.address, proto, q.port);
  const masq = masqueradeSettings(t);
  const fromPod = q.from !== undefined && masq.cidrs.some((c) => cidrContains(c, q.from!));
  const fromNode = q.from !== undefined && nodeAddresses.includes(q.from);
  const outside = q.from !== undefined && !fromPod && !fromNode;
  const sourceIs = q.from === undefined ? undefined : fromNode ? 'this node' : fromPod ? 'a pod (in the cluster CIDRs)' : 'outside the cluster';
  const service = (e: ElementState | undefined) => splitComment(e?.comment);

  const fw = firewall(t, key, q.from);
  if (fw) {
    out.why.push(`loadBalancerSourceRanges ${fw.ranges.join(', ') || '(none of this family)'}${fw.allowed === undefined ? '' : fw.allowed ? `: ${q.from} is allowed` : `: ${q.from} is not in them, dropped`}`);
    if (fw.allowed === false) out.verdict = 'dropped';
  }

  const pick = (counts: string, slots: string, k: Buffer): boolean => {
    const c = get(t, counts, k);
    if (!c?.data) return false;
    const { count, affinitySeconds } = countOf(c.data);
    const s = service(c);
    out.service ??= s.service;
    out.endpoints = slotEndpoints(t, slots, k, count, addrLen);
    out.why.push(...s.why);
    if (!s.why.length) out.why.push('every ready endpoint');
    if (affinitySeconds) {
      out.why.push(`sessionAffinity ClientIP, ${affinitySeconds} s`);
      if (q.from) {
        const aff = [...elems(t, k.length === 8 ? AFFINITY_SETS.nodeport : AFFINITY_SETS.ip).values()].find((e) => {
          const client = e.key.subarray(0, addrLen);
          return bytesToIp(client) === q.from && e.key.subarray(addrLen, addrLen + k.length).equals(k);
        });
        if (aff) {
          const slot = aff.key.readUInt32LE(aff.key.length - 4);
          const ep = slotEndpoints(t, slots, k, slot + 1, addrLen).find((_, i, a) => i === a.length - 1);
          out.why.push(`${q.from} is remembered on slot ${slot}${ep ? ` (${ep.address}:${ep.port})` : ''}${aff.expiresMs !== undefined ? `, for ${Math.round(aff.expiresMs / 1000)} s more` : ''}`);
        }
      }
    }
    if (out.verdict !== 'dropped') out.verdict = 'forwarded';
    return true;
  };

  const isNodePort = nodeAddresses.includes(q.address) && !has(t, SETS.serviceIPs, key);
  if (!isNodePort) {
    if (has(t, SETS.noEndpointServices, key)) {
      out.kind = has(t, SETS.clusterIPs, ipToBytes(q.address)) ? 'ClusterIP' : 'External';
      out.service = service(get(t, SETS.noEndpointServices, key)).service;
      out.verdict = 'rejected';
      out.why.push('no endpoint is ready or serving: new connections are refused at once (TCP reset, ICMP port unreachable)');
      return out;
    }
    if (has(t, SETS.dropServices, key)) {
      out.kind = 'ClusterIP';
      out.service = service(get(t, SETS.dropServices, key)).service;
      out.verdict = 'dropped';
      out.why.push('internalTrafficPolicy Local, and this node has none of the endpoints: dropped');
      return out;
    }
    if (!has(t, SETS.serviceIPs, key)) {
      if (has(t, SETS.clusterIPs, ipToBytes(q.address))) {
        out.kind = 'unused ClusterIP port';
        out.verdict = 'rejected';
        out.why.push(`${q.address} is a ClusterIP, but no Service port uses ${q.protocol} ${q.port}: rejected`);
      } else out.why.push(`${q.address} is not a Service address svcplane programs`);
      return out;
    }
    const localPolicy = has(t, SETS.localPolicyIPs, key);
    out.kind = localPolicy || has(t, SETS.externalIPs, key) ? 'External' : 'ClusterIP';
    if (out.kind === 'ClusterIP') {
      out.masquerade = masq.all || (q.from !== undefined && masq.cidrs.length > 0 && !fromPod) || undefined;
      if (q.from !== undefined) out.why.push(`source is ${sourceIs}${out.masquerade ? ': masqueraded' : ': source kept'}`);
    } else if (!localPolicy) {
      out.masquerade = true;
      out.why.push('externalTrafficPolicy Cluster: masqueraded, every endpoint');
    }
    if (localPolicy && (outside || q.from === undefined)) {
      out.why.push(q.from === undefined
        ? 'externalTrafficPolicy Local: clients from outside get this node\'s endpoints (below), source kept; this node\'s pods and the node itself get every endpoint'
        : `externalTrafficPolicy Local, source is ${sourceIs}: this node's endpoints, source kept`);
      if (has(t, SETS.dropExternal, key)) {
        out.service = service(get(t, SETS.serviceIPs, key)).service;
        out.verdict = 'dropped';
        out.why.push('this node has none of the endpoints: dropped (the load balancer should send elsewhere)');
        return out;
      }
      pick(SETS.localIPs, SETS.localEndpoints, key);
      return out;
    }
    if (localPolicy) {
      out.masquerade = fromNode;
      out.why.push(`externalTrafficPolicy Local, source is ${sourceIs}: short-circuited to every endpoint${fromNode ? ', masqueraded' : ''}`);
    }
    pick(SETS.serviceIPs, SETS.serviceEndpoints, key);
    return out;
  }

  // A node address: a NodePort, if one is programmed for this protocol and port.
  const pk = protoPortKey(proto, q.port);
  out.kind = 'NodePort';
  if (has(t, SETS.noEndpointNodePorts, pk)) {
    out.service = service(get(t, SETS.noEndpointNodePorts, pk)).service;
    out.verdict = 'rejected';
    out.why.push('no endpoint is ready or serving: refused at once');
    return out;
  }
  if (!has(t, SETS.serviceNodePorts, pk)) {
    out.kind = 'none';
    out.why.push(`${q.address} is a node address, but no NodePort ${q.protocol} ${q.port} is programmed`);
    return out;
  }
  const localPolicy = has(t, SETS.localPolicyNodePorts, pk);
  if (localPolicy && (outside || q.from === undefined)) {
    out.service = service(get(t, SETS.serviceNodePorts, pk)).service;
    out.why.push(`externalTrafficPolicy Local${sourceIs ? `, source is ${sourceIs}` : ''}: this node's endpoints, source kept`);
    if (has(t, SETS.dropNodePorts, pk)) {
      out.verdict = 'dropped';
      out.why.push('this node has none of the endpoints: dropped');
      return out;
    }
    pick(SETS.localNodePorts, SETS.localNodePortEndpoints, pk);
    return out;
  }
  out.masquerade = !localPolicy || fromNode;
  out.why.push(localPolicy ? `externalTrafficPolicy Local, source is ${sourceIs}: every endpoint` : 'externalTrafficPolicy Cluster: masqueraded, every endpoint');
  pick(SETS.serviceNodePorts, SETS.nodePortEndpoints, pk);
  return out;
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
    } else out.why.push(`no virtual service of svcplane's is ${q.protocol} ${q.address}:${q.port}`);
    return out;
  }
  const vs = services[i];
  const d = describeVirtualService(t, q.protocol, q.address, q.port);
  out.kind = d.kind;
  out.scheduler = vs.scheduler;
  if (d.service) out.service = d.service;
  const masq = t ? masqueradeSettings(t) : { cidrs: [], all: false };
  const fromPod = q.from !== undefined && masq.cidrs.some((x) => cidrContains(x, q.from!));
  const fromNode = q.from !== undefined && nodeAddresses.includes(q.from);
  const fw = t && d.kind !== 'NodePort' ? firewall(t, d.addressKey, q.from) : undefined;
  if (fw) out.why.push(`loadBalancerSourceRanges ${fw.ranges.join(', ') || '(none of this family)'}${fw.allowed === undefined ? '' : fw.allowed ? `: ${q.from} is allowed` : `: ${q.from} is not in them, dropped before IPVS`}`);
  if (d.policy) {
    out.masquerade = fromNode || undefined;
    out.why.push(q.from === undefined ? 'externalTrafficPolicy Local: source kept for clients from outside' : `externalTrafficPolicy Local, source is ${fromNode ? 'this node: masqueraded' : fromPod ? 'a pod: source kept' : 'outside the cluster: source kept'}`);
  }
  else if (d.kind === 'ClusterIP') {
    out.masquerade = masq.all || (q.from !== undefined && masq.cidrs.length > 0 && !fromPod) || undefined;
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
