// Service ports -> what IPVS and the Service-address interface should hold, pure. kube-proxy's IPVS mode
// (pkg/proxy/ipvs/proxier.go) is the model: a virtual service per ClusterIP, external IP, LoadBalancer IP and
// per node address for NodePorts; real servers are the endpoints (masquerading); ClusterIPs, external IPs and
// LoadBalancer IPs are bound on the dummy interface so the node accepts packets for them.
import type { ServicePort, ServicePortKey } from '../../model/types';
import { cidrContains } from '../../model/ip';
import { endpointWeight } from '../../model/weights';
import { type EndpointChoice, type NodeTopology, chooseEndpoints } from '../../model/topology';
import { FWD, type IpvsProtocol, type RealServer, SVC_FLAG, type VirtualService } from '../../netlink/ipvs';

/** The schedulers IPVS has (ip_vs_*.ko); svcplane.io/ipvs-scheduler must name one. */
export const SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'sh', 'dh', 'sed', 'nq', 'mh'];
/** Schedulers that only tell weight 0 from the rest (ip_vs_rr.c, ip_vs_lc.c, ip_vs_dh.c): other weights change nothing. */
const WEIGHTLESS = new Set(['rr', 'lc', 'dh']);

/**
 * IP_VS_SVC_F_SCHED3 marks the virtual services svcplane created: IPVS has no comment field, and a restarted
 * svcplane must tell its own services (adopt, update, delete) from anyone else's (never touched). No scheduler in
 * Linux uses SCHED3 (sh and mh use SCHED1/SCHED2), and the kernel stores and dumps flags as given. `ipvsadm -E`
 * sends every flag, so it clears the mark unless told `-b flag-3`: a full sync takes such a service back when a
 * Service wants its address:port (IpvsProxier.adoptUnmarked).
 */
export const OWNED_FLAG = SVC_FLAG.SCHED3;

export interface IpvsConfig {
  /** Default scheduler (--ipvs-scheduler). */
  scheduler: string;
  /** The node's addresses NodePorts are served on (already filtered by nodePortAddresses). */
  nodeAddresses: string[];
  /** This node (name, zone): local endpoints and topology hints. */
  node?: NodeTopology;
  /**
   * Whether to bind a Service address on svcplane0: not when another link of the node has it already (an
   * externalIP that is a node address; kube-proxy's `shouldBind`). Default: always.
   */
  bind?: (address: string) => boolean;
}

export interface DesiredService {
  vs: VirtualService;
  dests: Map<string, RealServer>;
  /** The Service port it comes from ("ns/name:port"). */
  owner: ServicePortKey;
}

export interface ServicePortPlan {
  services: Map<string, DesiredService>;
  /** Addresses to bind on the Service-address interface. */
  addresses: string[];
  /** A reason to log, once, when the scheduler annotation was refused. */
  schedulerProblem?: string;
}

export function vsKey(v: { protocol: IpvsProtocol; address: string; port: number }): string {
  return `${v.protocol}|${v.address}|${v.port}`;
}

export function destKey(d: { address: string; port: number }): string {
  return `${d.address}|${d.port}`;
}

/** The virtual services and bound addresses of one Service port. */
export function planServicePort(sp: ServicePort, cfg: IpvsConfig): ServicePortPlan {
  let scheduler = cfg.scheduler;
  let schedulerProblem: string | undefined;
  if (sp.ipvsScheduler !== undefined) {
    if (SCHEDULERS.includes(sp.ipvsScheduler)) scheduler = sp.ipvsScheduler;
    else schedulerProblem = `annotation svcplane.io/ipvs-scheduler ${JSON.stringify(sp.ipvsScheduler)} is not one of ${SCHEDULERS.join(', ')}; using ${cfg.scheduler}`;
  }
  const affinity = sp.sessionAffinity.type === 'ClientIP' ? sp.sessionAffinity.timeoutSeconds : 0;
  const services = new Map<string, DesiredService>();
  const addresses: string[] = [];
  // Real servers per family and view, shared by the virtual services of that view (ClusterIPs: the internal
  // endpoints; externalIPs, LB IPs, NodePorts: the external ones): a 10k-Service sync should not build one map per
  // address. Traffic policies as kube-proxy's IPVS mode: external virtual services under externalTrafficPolicy
  // Local get this node's endpoints, or all of them when it has none (PR 97081: so this node's pods still reach the
  // Service; the nftables table drops clients from outside then, and keeps their source otherwise).
  const destsOf = new Map<string, Map<string, RealServer>>();
  const choices = new Map<number, EndpointChoice>();
  const choiceOf = (family: 4 | 6) => {
    let c = choices.get(family);
    if (!c) choices.set(family, (c = chooseEndpoints(sp, family, cfg.node ?? {})));
    return c;
  };
  const familyDests = (family: 4 | 6, external: boolean) => {
    const id = `${family}${external ? 'x' : 'i'}`;
    let dests = destsOf.get(id);
    if (dests) return dests;
    const c = choiceOf(family);
    const list = external ? (c.externalLocal && c.local.length === 0 ? c.cluster : c.external) : c.internal;
    dests = new Map<string, RealServer>();
    for (const e of list) dests.set(destKey(e), { address: e.address, port: e.port, weight: endpointWeight(sp.endpointWeights, e), forward: FWD.MASQ, upperThreshold: 0, lowerThreshold: 0 });
    destsOf.set(id, dests);
    return dests;
  };
  const flags = OWNED_FLAG | (affinity ? SVC_FLAG.PERSISTENT : 0);
  const add = (address: string, port: number, bind: boolean, external: boolean) => {
    const family = address.includes(':') ? 6 : 4;
    const vs: VirtualService = { family, protocol: sp.protocol, address, port, scheduler, flags, timeout: affinity, netmask: family === 4 ? 0xffffffff : 128 };
    const key = vsKey(vs);
    if (services.has(key)) return; // an externalIP equal to a ClusterIP: the ClusterIP's virtual service serves it
    services.set(key, { vs, dests: familyDests(family, external), owner: sp.key });
    if (bind && (cfg.bind?.(address) ?? true) && !addresses.includes(address)) addresses.push(address);
  };
  for (const ip of sp.clusterIPs) add(ip, sp.port, true, false);
  for (const ip of [...sp.externalIPs, ...sp.loadBalancerIPs]) add(ip, sp.port, true, true);
  if (sp.nodePort > 0) {
    const families = new Set(sp.clusterIPs.map((ip) => (ip.includes(':') ? 6 : 4)));
    for (const ip of cfg.nodeAddresses) if (families.has(ip.includes(':') ? 6 : 4)) add(ip, sp.nodePort, false, true);
  }
  if (sp.endpointWeights && WEIGHTLESS.has(scheduler)) {
    const note = `svcplane.io/endpoint-weights has no effect with scheduler ${scheduler} beyond weight 0 (use wrr, wlc, sed, nq, lblc, lblcr, sh or mh)`;
    schedulerProblem = schedulerProblem ? `${schedulerProblem}; ${note}` : note;
  }
  return { services, addresses, schedulerProblem };
}

/** The node addresses NodePorts listen on: every address of the node's links matching nodePortAddresses. */
export function nodePortAddressesOf(all: Array<{ address: string; scope: number; link: string }>, nodePortCIDRs: string[], serviceLink: string): string[] {
  const out: string[] = [];
  for (const a of all) {
    if (a.link === serviceLink || a.link === 'lo' || a.scope >= 200) continue; // loopback/link-local/host scope
    if (nodePortCIDRs.length && !nodePortCIDRs.some((c) => cidrContains(c, a.address))) continue;
    if (!out.includes(a.address)) out.push(a.address);
  }
  return out;
}
