// Which endpoints traffic goes to (pure), after kube-proxy's pkg/proxy/topology.go (CategorizeEndpoints):
//
// * cluster endpoints (traffic policy Cluster): the ready endpoints, narrowed by topology when the EndpointSlice
//   hints allow it; when none is ready, the serving-terminating ones (topology ignored).
// * local endpoints (policy Local): the ready endpoints on this node; when none, the serving-terminating ones here.
// * topology: hints come from the EndpointSlice controller (trafficDistribution PreferClose / PreferSameZone give
//   every ready endpoint a zone hint, PreferSameNode a node hint too; kube-proxy never reads trafficDistribution
//   itself). Node hints are used when every ready endpoint has one and one names this node; else zone hints when
//   every ready endpoint has one and one names this node's zone (label topology.kubernetes.io/zone); else none:
//   a single endpoint without hints, or no endpoint for this node or zone, means all endpoints.
// * hasAny: some endpoint is ready or serving-terminating. A Service port without any is rejected; one whose
//   Local policy finds none here is dropped (kube-proxy: the connection is not refused, the client may try another
//   node).
import type { Endpoint, IPFamily, ServicePort } from './types';

export interface NodeTopology {
  /** This node's name (EndpointSlice endpoints' nodeName); without it nothing is local. */
  name?: string;
  /** topology.kubernetes.io/zone of this node; without it zone hints are not used. */
  zone?: string;
}

export type TopologyMode = '' | 'PreferSameZone' | 'PreferSameNode';

export interface EndpointChoice {
  /** Traffic policy Cluster: all endpoints, narrowed by topology. */
  cluster: Endpoint[];
  /** Traffic policy Local: this node's endpoints. */
  local: Endpoint[];
  /** Where ClusterIP traffic goes (internalTrafficPolicy). */
  internal: Endpoint[];
  /** Where NodePort, externalIP and LoadBalancer traffic from outside the node goes (externalTrafficPolicy). */
  external: Endpoint[];
  /** Whether external traffic follows the Local policy (source kept, local endpoints only, pods short-circuited). */
  externalLocal: boolean;
  hasAny: boolean;
  topology: TopologyMode;
  /** Whether the cluster / local list fell back to serving-terminating endpoints (none ready). */
  clusterTerminating: boolean;
  localTerminating: boolean;
}

/**
 * Why a list of endpoints is what it is, for people (explain, status): policy, topology, termination. Kept short:
 * it travels in the kernel as part of an element comment (127 bytes at most).
 */
export function choiceReasons(c: EndpointChoice, view: 'cluster' | 'local', node: NodeTopology): string[] {
  const out: string[] = [];
  if (view === 'local') out.push(`this node's endpoints only${node.name ? ` (${node.name})` : ''}`);
  if (view === 'cluster' && c.topology === 'PreferSameZone') out.push(`topology: zone ${node.zone}`);
  if (view === 'cluster' && c.topology === 'PreferSameNode') out.push(`topology: node ${node.name}`);
  if (view === 'cluster' ? c.clusterTerminating : c.localTerminating) out.push('none ready: serving-terminating');
  return out;
}

/** Whether the port can be reached from outside the cluster (kube-proxy's ExternallyAccessible). */
export function externallyAccessible(sp: ServicePort): boolean {
  return sp.nodePort > 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0;
}

export function topologyMode(ready: Endpoint[], node: NodeTopology): TopologyMode {
  if (ready.length === 0) return '';
  let allNode = true;
  let forNode = false;
  let allZone = true;
  let forZone = false;
  for (const e of ready) {
    if (!e.nodeHints || e.nodeHints.length === 0) allNode = false;
    else if (node.name !== undefined && e.nodeHints.includes(node.name)) forNode = true;
    if (!e.zoneHints || e.zoneHints.length === 0) allZone = false;
    else if (node.zone !== undefined && e.zoneHints.includes(node.zone)) forZone = true;
  }
  if (allNode && forNode) return 'PreferSameNode';
  if (allZone && forZone && node.zone !== undefined) return 'PreferSameZone';
  return '';
}

function availableForTopology(e: Endpoint, mode: TopologyMode, node: NodeTopology): boolean {
  if (mode === 'PreferSameNode') return !!e.nodeHints && node.name !== undefined && e.nodeHints.includes(node.name);
  if (mode === 'PreferSameZone') return !!e.zoneHints && node.zone !== undefined && e.zoneHints.includes(node.zone);
  return true;
}

/** The endpoints of one family of a Service port, categorized as kube-proxy does (see the file comment). */
export function chooseEndpoints(sp: ServicePort, family: IPFamily, node: NodeTopology): EndpointChoice {
  const all = sp.allEndpoints.filter((e) => e.family === family);
  const ready = all.filter((e) => e.ready);
  const servingTerminating = (list: Endpoint[]) => list.filter((e) => !e.ready && e.serving && e.terminating);
  const mode = topologyMode(ready, node);
  let cluster = mode === '' ? ready : ready.filter((e) => availableForTopology(e, mode, node));
  const clusterTerminating = cluster.length === 0;
  if (clusterTerminating) cluster = servingTerminating(all);
  const isLocal = (e: Endpoint) => node.name !== undefined && e.nodeName === node.name;
  let local = ready.filter(isLocal);
  const localTerminating = local.length === 0;
  if (localTerminating) local = servingTerminating(all).filter(isLocal);
  const hasAny = ready.length > 0 || servingTerminating(all).length > 0;
  const externalLocal = sp.externalTrafficPolicy === 'Local' && externallyAccessible(sp);
  return {
    cluster, local, hasAny, topology: mode, clusterTerminating: clusterTerminating && cluster.length > 0, localTerminating: localTerminating && local.length > 0,
    internal: sp.internalTrafficPolicy === 'Local' ? local : cluster,
    external: externalLocal ? local : cluster,
    externalLocal,
  };
}
