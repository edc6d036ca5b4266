// `explain` for the IPVS mode: the flow against svcplane's virtual services and real servers, and the nftables table
// beside them (which Service port and why, from its comments; masquerade, loadBalancerSourceRanges, Service CIDRs).
import { cidrContains, ipToBytes } from '../../model/ip';
import type { Explanation, FlowQuery } from '../explain';
import { firewallRangesIn, hasElement, masqueradeSettings, serviceCIDRsOf } from '../nftables/readback';
import type { TableState } from '../nftables/objects';
import { describeVirtualService } from './describe';
import { IPVS_SETS } from './filter';
import type { RealServerState, VirtualServiceState } from '../../netlink/ipvs';

/** Explains a flow against IPVS (virtual services, real servers) and the nftables table beside it. */
export function explainIpvs(services: VirtualServiceState[], dests: RealServerState[][], t: TableState | undefined, q: FlowQuery, nodeAddresses: string[]): Explanation {
  const out: Explanation = { flow: q, kind: 'none', verdict: 'not a Service', endpoints: [], why: [] };
  const i = services.findIndex((s) => s.protocol === q.protocol && s.port === q.port && s.address === q.address);
  if (i < 0) {
    if (t && hasElement(t, IPVS_SETS.clusterIPs, ipToBytes(q.address))) {
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
  const fw = t && d.kind !== 'NodePort' ? firewallRangesIn(t, d.addressKey, q.from) : undefined;
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

