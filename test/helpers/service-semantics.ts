// What Kubernetes says a new connection to a scenario's Service gets (kube-proxy's semantics, written from the
// Service and EndpointSlice as test/helpers/explain-scenarios.ts makes them, not from svcplane's code): the third
// opinion in test/kernel/explain-agrees.test.ts. explain is read from the kernel's rules, so explain and the
// connections agreeing says nothing about whether those rules do what Kubernetes asks; this model does.
//   - usable endpoints: the ready ones; if none is ready, the serving-terminating ones (per view: all, or this
//     node's); none usable at all: refused; some usable but none in a Local view: dropped;
//   - ClusterIP: internalTrafficPolicy picks the view; masqueraded with --masquerade-all, or from outside the
//     cluster CIDR when one is given;
//   - external IPs, LoadBalancer IPs and NodePorts: a LoadBalancer IP drops sources outside its source ranges first;
//     externalTrafficPolicy Cluster: every endpoint, masqueraded; Local: this node's endpoints with the source kept,
//     but this node's pods (told by the cluster CIDR) and the node itself get every endpoint (the node masqueraded);
//   - NodePorts answer on the node's addresses within nodePortAddresses (all of them when unset) and nowhere else;
//   - a pod reaching itself is masqueraded (hairpin), which the comparison allows for.
import type { Sandbox } from '../../scripts/lib/sandbox';
import type { Explanation } from '../../src/dataplane/explain';
import { cidrContains } from '../../src/model/ip';
import type { FlowCase } from './explain-agreement';
import type { EndpointSpec, ProxyFlags } from './explain-scenarios';

/** The answer Kubernetes expects, in explain's shape so flow-verdicts.ts can hold the connections to it. */
export function expectedByKubernetes(sb: Sandbox, flags: ProxyFlags, f: FlowCase): Explanation {
  const s = f.scenario;
  const q = { protocol: f.target.proto, address: f.target.addr, port: f.target.port, from: f.from };
  const answer = (verdict: Explanation['verdict'], eps: EndpointSpec[] = [], masquerade?: boolean): Explanation => ({
    flow: q, kind: 'none', verdict, why: [], endpoints: eps.map((e) => ({ address: sb.backends[e.backend].v4, port: 8080, share: 1 / eps.length })),
    ...(masquerade !== undefined ? { masquerade } : {}),
  });
  const usable = (eps: EndpointSpec[]) => {
    const ready = eps.filter((e) => e.state === 'ready');
    return ready.length ? ready : eps.filter((e) => e.state === 'serving-terminating');
  };
  const all = usable(s.endpoints);
  const local = usable(s.endpoints.filter((e) => e.local));
  const fromNode = f.source === 'node';
  const fromPod = flags.clusterCIDR && f.source === 'pod';
  const view = (policy: 'Cluster' | 'Local', masquerade: boolean) =>
    all.length === 0 ? answer('rejected') : policy === 'Cluster' ? answer('forwarded', all, masquerade) : local.length ? answer('forwarded', local, masquerade) : answer('dropped');

  if (f.target.role === 'ClusterIP') return view(s.itp, flags.masqueradeAll || (flags.clusterCIDR && !fromPod));
  if (f.target.role === 'NodePort') {
    const npa = flags.nodePortAddresses;
    const served = npa === undefined || (npa === 'primary' ? f.target.addr === flags.nodeIP : cidrContains(npa, f.target.addr));
    if (!served) return answer('not a Service');
  }
  if (f.target.role === 'LoadBalancer IP' && s.sourceRanges && !s.sourceRanges.some((r) => cidrContains(r, f.from))) return answer('dropped');
  if (s.etp === 'Cluster' || all.length === 0) return view('Cluster', true);
  if (fromNode || fromPod) return answer('forwarded', all, fromNode);
  return view('Local', false);
}
