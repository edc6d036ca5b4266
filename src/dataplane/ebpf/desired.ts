// Service ports -> what the socket-LB maps should hold (pure). The socket hooks see connections that start on this
// node (its processes and its pods), so every frontend takes the endpoints kube-proxy gives node-local clients:
//  - ClusterIPs: the internal list (internalTrafficPolicy, topology, serving-terminating fallback);
//  - external IPs, LoadBalancer IPs and this node's addresses x NodePort: the cluster list. kube-proxy sends local
//    sources and this node's pods to the cluster chain even under externalTrafficPolicy Local ("short-circuit"),
//    so the Local policy narrows only traffic from other machines, which the nftables table handles.
// A frontend is left out of the maps (and so handled by the nftables table, the same decision) when the socket
// cannot honour it: SCTP, LoadBalancer IPs with loadBalancerSourceRanges (the source a range is checked against is
// not known at connect()), a Local policy with no endpoint here (kube-proxy drops; a socket can only refuse), more
// slots than a count holds. A Service port with no endpoint at all is refused at once (count 0, ECONNREFUSED).
import type { ModelProblem, ServicePort, ServicePortKey } from '../../model/types';
import { claimConflictProblem, claimPrecedence } from '../../model/precedence';
import { type NodeTopology, chooseEndpoints } from '../../model/topology';
import { emptyUnweightedLists, weightedSlots } from '../../model/weights';
import { FLAG, type Frontend, type SocketProtocol } from './layout';

/** The most slots a frontend can hold (svp_svc_val.count is 16 bits). */
export const MAX_SLOTS = 0xffff;

export interface EbpfConfig {
  /** This node's addresses that serve NodePorts (nodePortAddresses applied). */
  nodeAddresses: string[];
  /** This node (name, zone): Local policies and topology hints. */
  node?: NodeTopology;
}

export interface DesiredSet {
  /** "ns/name:port|4|internal": the Service port, family and endpoint list it stands for. */
  key: string;
  owner: ServicePortKey;
  /** Backend keys (backendKey) slot by slot: slot i+1 holds slots[i]. */
  slots: string[];
}

export interface DesiredFrontend {
  frontend: Frontend;
  set: string;
  /** 0: refuse (no endpoints). */
  count: number;
  flags: number;
  affinitySeconds: number;
  owner: ServicePortKey;
}

export interface DesiredSocketLB {
  frontends: Map<string, DesiredFrontend>;
  sets: Map<string, DesiredSet>;
  /** Backend key -> address and port. */
  backends: Map<string, { address: string; port: number }>;
  /** Why a frontend went to the nftables table instead, by Service port (explain, status). */
  bypassed: Map<ServicePortKey, string>;
  problems: ModelProblem[];
}

export function frontendKey(f: Frontend): string {
  return `${f.protocol}|${f.address}|${f.port}`;
}

export function backendKey(b: { address: string; port: number }): string {
  return `${b.address}|${b.port}`;
}

export function emptyDesired(): DesiredSocketLB {
  return { frontends: new Map(), sets: new Map(), backends: new Map(), bypassed: new Map(), problems: [] };
}

/** Adds one Service port's frontends, sets and backends to `out`. A frontend another port holds stays with it. */
export function addServicePort(out: DesiredSocketLB, sp: ServicePort, cfg: EbpfConfig): void {
  if (sp.protocol === 'SCTP') {
    out.bypassed.set(sp.key, 'SCTP: the socket hooks translate TCP and UDP only');
    return;
  }
  const protocol: SocketProtocol = sp.protocol;
  const familyOf = (ip: string): 4 | 6 => (ip.includes(':') ? 6 : 4);
  const families = new Set(sp.clusterIPs.map(familyOf));
  for (const family of families) {
    const choice = chooseEndpoints(sp, family, cfg.node ?? {});
    emptyUnweightedLists(choice, sp.endpointWeights);
    const setOf = (view: 'internal' | 'cluster'): { set: string; count: number } | undefined => {
      const list = view === 'internal' ? choice.internal : choice.cluster;
      const key = `${sp.key}|${family}|${view}`;
      if (!choice.hasAny) return { set: key, count: 0 };
      if (list.length === 0) return undefined; // a Local policy with no endpoint here: nftables drops, as kube-proxy
      let set = out.sets.get(key);
      if (!set) {
        const slots = weightedSlots(list, sp.endpointWeights).map((e) => {
          const k = backendKey(e);
          if (!out.backends.has(k)) out.backends.set(k, { address: e.address, port: e.port });
          return k;
        });
        if (slots.length > MAX_SLOTS) {
          out.problems.push({ object: `Service ${sp.key}`, message: `${slots.length} weighted slots exceed the socket LB's ${MAX_SLOTS}; its traffic is NATed by the nftables table instead` });
          return undefined;
        }
        set = { key, owner: sp.key, slots };
        out.sets.set(key, set);
      }
      return { set: key, count: set.slots.length };
    };
    const affinity = sp.sessionAffinity.type === 'ClientIP' ? sp.sessionAffinity.timeoutSeconds : 0;
    const add = (address: string, port: number, view: 'internal' | 'cluster') => {
      if (familyOf(address) !== family) return;
      const frontend: Frontend = { address, port, protocol };
      const fk = frontendKey(frontend);
      const held = out.frontends.get(fk);
      if (held) {
        // An externalIP equal to its own ClusterIP: the ClusterIP's entry serves it. Another Service's: it keeps it.
        if (held.owner !== sp.key) out.problems.push(claimConflictProblem(`${protocol} ${address}:${port}`, sp.key, held.owner));
        return;
      }
      const s = setOf(view);
      if (!s) {
        if (!out.bypassed.has(sp.key)) out.bypassed.set(sp.key, 'Local traffic policy with no endpoint on this node: the nftables table drops it, as kube-proxy does');
        return;
      }
      const flags = (affinity ? FLAG.affinity : 0) | (view === 'cluster' ? FLAG.external : 0);
      out.frontends.set(fk, { frontend, set: s.set, count: s.count, flags, affinitySeconds: affinity, owner: sp.key });
    };
    for (const ip of sp.clusterIPs) add(ip, sp.port, 'internal');
    for (const ip of sp.externalIPs) add(ip, sp.port, 'cluster');
    if (sp.loadBalancerSourceRanges.length === 0) for (const ip of sp.loadBalancerIPs) add(ip, sp.port, 'cluster');
    else if (sp.loadBalancerIPs.length) out.bypassed.set(sp.key, 'loadBalancerSourceRanges: checked per packet by the nftables table');
    if (sp.nodePort > 0) for (const ip of cfg.nodeAddresses) add(ip, sp.nodePort, 'cluster');
  }
}

/** The whole desired state, Service ports taken oldest first so a contested frontend goes where claimPrecedence says. */
export function desiredSocketLB(servicePorts: Iterable<ServicePort>, cfg: EbpfConfig): DesiredSocketLB {
  const out = emptyDesired();
  for (const sp of [...servicePorts].sort(claimPrecedence)) addServicePort(out, sp, cfg);
  return out;
}
