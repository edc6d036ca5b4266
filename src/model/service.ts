// core/v1 Service -> ServicePorts (without endpoints), following kube-proxy's pkg/proxy/serviceport.go and
// service.go (newBaseServiceInfo, ServiceChangeTracker.serviceToServiceMap). Differences from kube-proxy are
// deliberate and noted: kube-proxy trusts the API server's validation, svcplane also reads hand-written manifests,
// so what the API server would have rejected is reported as a problem instead of being half-programmed.

import type { IPFamily, KubeService, ModelProblem, Protocol, ServiceKey, ServicePort, TrafficPolicy } from './types';
import { flat, isDNSLabel, isInt, isPort, isRecord, isUnset, namespaceOf, objectRef, protocolOf, show } from './guards';
import { bytesToIp, canonicalIP, cidrToString, parseCIDR, parseIP, specialAddress } from './ip';
import { ENDPOINT_WEIGHTS_ANNOTATION, type EndpointWeights, parseEndpointWeights } from './weights';

export type ServicePortSpec = Omit<ServicePort, 'endpoints' | 'allEndpoints'>;

export interface ServicePortsResult {
  ports: ServicePortSpec[];
  problems: ModelProblem[];
  /**
   * Why the whole Service is not proxied: headless or ExternalName (not a problem, as in kube-proxy, which skips
   * them silently), or the reason of its single Service-level problem.
   */
  skipped?: string;
}

/** v1.DefaultClientIPServiceAffinitySeconds and v1.MaxClientIPServiceAffinitySeconds. */
export const DEFAULT_CLIENT_IP_TIMEOUT = 10800;
export const MAX_CLIENT_IP_TIMEOUT = 86400;

const SERVICE_TYPES = new Set(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']);

/** kube-proxy's ServicePortName.String(): "ns/name:portName". */
export function servicePortKey(namespace: string, name: string, portName: string): string {
  return flat(namespace, '/', name, ':', portName);
}

/** "ns/name" of a Service, or undefined when its name or namespace is missing or invalid. */
export function serviceKeyOf(svc: KubeService): ServiceKey | undefined {
  const meta: unknown = isRecord(svc) ? svc.metadata : undefined;
  const name = isRecord(meta) ? meta.name : undefined;
  const ns = namespaceOf(meta);
  return isDNSLabel(name) && ns !== undefined ? flat(ns, '/', name) : undefined;
}

/** Thrown inside this module: the Service is skipped with one problem. */
class Invalid extends Error {}
/** Thrown inside this module: the Service is not proxied, and that is fine (headless, ExternalName). */
class NotProxied extends Error {}

type Warn = (message: string) => void;

export function servicePortsOf(svc: KubeService): ServicePortsResult {
  const object = objectRef('Service', isRecord(svc) ? svc.metadata : undefined);
  const problems: ModelProblem[] = [];
  try {
    const ports = build(svc, (message) => problems.push({ object, message }));
    return { ports, problems };
  } catch (e) {
    if (e instanceof NotProxied) return { ports: [], problems: [], skipped: e.message };
    // One problem for a skipped Service: the warnings about its parts gathered so far no longer matter.
    if (e instanceof Invalid) return { ports: [], problems: [{ object, message: `${e.message}; Service skipped` }], skipped: e.message };
    throw e;
  }
}

function build(svc: unknown, warn: Warn): ServicePortSpec[] {
  if (!isRecord(svc)) throw new Invalid('not an object');
  const meta = svc.metadata;
  if (!isRecord(meta) || isUnset(meta.name)) throw new Invalid('no metadata.name');
  if (!isDNSLabel(meta.name)) throw new Invalid(`metadata.name ${show(meta.name)} is not a valid name (RFC 1123 label)`);
  const name = meta.name;
  const namespace = namespaceOf(meta);
  if (namespace === undefined) throw new Invalid(`metadata.namespace ${show(meta.namespace)} is not a valid namespace`);
  const spec = svc.spec ?? {};
  if (!isRecord(spec)) throw new Invalid('spec is not an object');

  const type = isUnset(spec.type) ? 'ClusterIP' : spec.type;
  if (typeof type !== 'string' || !SERVICE_TYPES.has(type)) {
    throw new Invalid(`spec.type ${show(type)} is not ClusterIP, NodePort, LoadBalancer or ExternalName`);
  }
  // ShouldSkipService: ExternalName Services are DNS only; headless ones have no virtual IP to proxy.
  if (type === 'ExternalName') throw new NotProxied('type ExternalName (DNS only, nothing to proxy)');
  const clusterIPs = clusterIPsOf(spec);
  const families = new Set(clusterIPs.map((ip) => (ip.includes(':') ? 6 : 4) as IPFamily));

  const sessionAffinity = sessionAffinityOf(spec);
  const internalTrafficPolicy = policyOf(spec.internalTrafficPolicy, 'internalTrafficPolicy');
  let externalTrafficPolicy = policyOf(spec.externalTrafficPolicy, 'externalTrafficPolicy');
  const externalIPs = shared(ipListOf(spec.externalIPs, 'spec.externalIPs', families, warn));
  // apiservice.ExternallyAccessible: Local only means something with a way in from outside the cluster.
  if (type === 'ClusterIP' && externalIPs.length === 0) externalTrafficPolicy = 'Cluster';
  const loadBalancerSourceRanges = shared(type === 'LoadBalancer' ? sourceRangesOf(spec, warn) : []);
  const loadBalancerIPs = shared(type === 'LoadBalancer' ? loadBalancerIPsOf(svc.status, families, warn) : []);
  const healthCheckNodePort = healthCheckNodePortOf(spec, type, externalTrafficPolicy, warn);

  const annotations = isRecord(meta.annotations) ? meta.annotations : {};
  const scheduler = annotations[IPVS_SCHEDULER_ANNOTATION];
  const weightsText = annotations[ENDPOINT_WEIGHTS_ANNOTATION];
  let endpointWeights: EndpointWeights | undefined;
  if (typeof weightsText === 'string') {
    const parsed = parseEndpointWeights(weightsText, (s) => canonicalIP(s));
    for (const w of parsed.problems) warn(w);
    endpointWeights = parsed.weights;
  }
  const createdAt = createdAtOf(meta.creationTimestamp);
  return portsOf(spec, type, warn).map((p) => ({
    key: servicePortKey(namespace, name, p.portName),
    namespace,
    name,
    portName: p.portName,
    protocol: p.protocol,
    port: p.port,
    nodePort: p.nodePort,
    clusterIPs,
    externalIPs,
    loadBalancerIPs,
    externalTrafficPolicy,
    internalTrafficPolicy,
    sessionAffinity,
    healthCheckNodePort,
    loadBalancerSourceRanges,
    ipvsScheduler: typeof scheduler === 'string' && scheduler !== '' ? scheduler : undefined,
    endpointWeights,
    createdAt,
  }));
}

/**
 * creationTimestamp in one comparable form (ISO 8601 UTC, milliseconds), or "" when absent or unreadable: the API
 * server always sets it, so only a hand-written manifest lacks it, and then the name decides (precedence.ts).
 */
function createdAtOf(x: unknown): string {
  if (typeof x !== 'string' || x === '') return '';
  const t = Date.parse(x);
  return Number.isFinite(t) ? new Date(t).toISOString() : '';
}

/** Per-Service IPVS scheduler (annotation svcplane.io/ipvs-scheduler): rr, wrr, lc, wlc, lblc, lblcr, sh, dh, sed, nq, mh. */
export const IPVS_SCHEDULER_ANNOTATION = 'svcplane.io/ipvs-scheduler';

/** spec.clusterIPs, else spec.clusterIP (GetClusterIPByFamily), canonical, at most one per family. */
function clusterIPsOf(spec: Record<string, unknown>): string[] {
  const single = spec.clusterIP;
  const list = spec.clusterIPs;
  if (!isUnset(single) && typeof single !== 'string') throw new Invalid(`spec.clusterIP ${show(single)} is not a string`);
  if (list !== undefined && list !== null && !Array.isArray(list)) throw new Invalid('spec.clusterIPs is not a list');
  const fromList = Array.isArray(list) && list.length > 0;
  const raw: unknown[] = fromList ? list : isUnset(single) ? [] : [single];
  if (single === 'None' || raw[0] === 'None') throw new NotProxied('headless (clusterIP None), nothing to proxy');
  if (raw.length === 0) {
    // The API server always allocates one; only a hand-written manifest lacks it, and svcplane allocates nothing.
    throw new Invalid('no cluster IP (spec.clusterIP is empty)');
  }
  if (raw.length > 2) throw new Invalid(`spec.clusterIPs has ${raw.length} addresses (at most one IPv4 and one IPv6)`);
  const out: string[] = [];
  const seen = new Set<IPFamily>();
  raw.forEach((ip, i) => {
    const p = parseIP(ip);
    const field = fromList ? `spec.clusterIPs[${i}]` : 'spec.clusterIP';
    if (!p) throw new Invalid(`${field} ${show(ip)} is not a valid IP address`);
    const special = specialAddress(p);
    if (special) throw new Invalid(`${field} ${show(ip)} is ${special}, which cannot be a Service's (the API server refuses it)`);
    if (seen.has(p.family)) throw new Invalid(`spec.clusterIPs has two IPv${p.family} addresses`);
    seen.add(p.family);
    out.push(bytesToIp(p.bytes));
  });
  // The API server keeps spec.clusterIP == spec.clusterIPs[0]; a manifest that does not is ambiguous.
  if (fromList && !isUnset(single)) {
    const p = parseIP(single);
    if (!p || bytesToIp(p.bytes) !== out[0]) throw new Invalid(`spec.clusterIP ${show(single)} differs from spec.clusterIPs[0] ${show(list[0])}`);
  }
  return out;
}

function sessionAffinityOf(spec: Record<string, unknown>): ServicePort['sessionAffinity'] {
  const t = spec.sessionAffinity;
  if (isUnset(t) || t === 'None') return NO_AFFINITY;
  if (t !== 'ClientIP') throw new Invalid(`spec.sessionAffinity ${show(t)} is not None or ClientIP`);
  const cfg = spec.sessionAffinityConfig;
  const clientIP = isRecord(cfg) ? cfg.clientIP : undefined;
  const timeout = isRecord(clientIP) ? clientIP.timeoutSeconds : undefined;
  // The API server defaults the timeout to 10800 s (3 h); kube-proxy uses whatever the Service carries.
  if (timeout === undefined || timeout === null) return { type: 'ClientIP', timeoutSeconds: DEFAULT_CLIENT_IP_TIMEOUT };
  if (!isInt(timeout) || timeout < 1 || timeout > MAX_CLIENT_IP_TIMEOUT) {
    throw new Invalid(`spec.sessionAffinityConfig.clientIP.timeoutSeconds ${show(timeout)} is not in 1..${MAX_CLIENT_IP_TIMEOUT}`);
  }
  return { type: 'ClientIP', timeoutSeconds: timeout };
}

function policyOf(x: unknown, field: string): TrafficPolicy {
  if (isUnset(x)) return 'Cluster';
  if (x === 'Cluster' || x === 'Local') return x;
  throw new Invalid(`spec.${field} ${show(x)} is not Cluster or Local`);
}

/**
 * Canonical, deduplicated IPs of the Service's families. An address of a family the Service has no ClusterIP of is
 * dropped silently: kube-proxy runs one proxier per family and, in its words, "with dual stack services, this is
 * actually expected" (service.go). An invalid address is dropped with a problem; the others stay.
 */
function ipListOf(x: unknown, field: string, families: Set<IPFamily>, warn: Warn): string[] {
  if (x === undefined || x === null) return [];
  if (!Array.isArray(x)) throw new Invalid(`${field} is not a list`);
  const out: string[] = [];
  x.forEach((ip, i) => {
    const p = parseIP(ip);
    if (!p) return warn(`${field}[${i}] ${show(ip)} is not a valid IP address; ignored`);
    const special = specialAddress(p);
    if (special) return warn(`${field}[${i}] ${show(ip)} is ${special}, which cannot be a Service's (the API server refuses it); ignored`);
    const text = bytesToIp(p.bytes);
    if (families.has(p.family) && !out.includes(text)) out.push(text);
  });
  return out;
}

/**
 * status.loadBalancer.ingress IPs. Hostname-only entries have nothing to program, and entries whose ipMode is not
 * VIP (absent means VIP) are skipped: "Proxy" load balancers deliver to the node, not to the VIP (IsVIPMode).
 * The status is written by a load-balancer controller, so a bad entry is a warning, never a reason to skip.
 */
function loadBalancerIPsOf(status: unknown, families: Set<IPFamily>, warn: Warn): string[] {
  const lb = isRecord(status) ? status.loadBalancer : undefined;
  const ingress = isRecord(lb) ? lb.ingress : undefined;
  if (ingress === undefined || ingress === null) return [];
  if (!Array.isArray(ingress)) {
    warn('status.loadBalancer.ingress is not a list; ignored');
    return [];
  }
  const ips: unknown[] = [];
  for (const ing of ingress) {
    if (!isRecord(ing) || isUnset(ing.ip)) continue;
    if (!isUnset(ing.ipMode) && ing.ipMode !== 'VIP') continue;
    ips.push(ing.ip);
  }
  // Indexes in messages are those of the kept entries' IPs; name the address instead.
  const out: string[] = [];
  for (const ip of ips) {
    const p = parseIP(ip);
    if (!p) {
      warn(`status.loadBalancer.ingress ip ${show(ip)} is not a valid IP address; ignored`);
      continue;
    }
    const special = specialAddress(p);
    if (special) {
      warn(`status.loadBalancer.ingress ip ${show(ip)} is ${special}, which cannot be a load balancer's; ignored`);
      continue;
    }
    const text = bytesToIp(p.bytes);
    if (families.has(p.family) && !out.includes(text)) out.push(text);
  }
  return out;
}

/**
 * spec.loadBalancerSourceRanges as canonical CIDRs (kube-proxy trims spaces; host bits are cleared). Both families
 * are kept: the dataplane needs to know ranges were given even when none is of its family. Dropping an invalid
 * range only narrows access, but dropping all of them would open the load balancer to every source, so then the
 * Service is skipped instead (fail closed).
 */
function sourceRangesOf(spec: Record<string, unknown>, warn: Warn): string[] {
  const x = spec.loadBalancerSourceRanges;
  if (x === undefined || x === null) return [];
  if (!Array.isArray(x)) throw new Invalid('spec.loadBalancerSourceRanges is not a list');
  const out: string[] = [];
  const bad: string[] = [];
  x.forEach((r, i) => {
    const c = typeof r === 'string' ? parseCIDR(r.trim()) : undefined;
    if (!c) bad.push(`spec.loadBalancerSourceRanges[${i}] ${show(r)}`);
    else if (!out.includes(cidrToString(c))) out.push(cidrToString(c));
  });
  if (bad.length > 0 && out.length === 0) {
    throw new Invalid(`${bad.join(', ')}: not a valid CIDR, and no valid range is left (refusing to allow every source)`);
  }
  for (const b of bad) warn(`${b} is not a valid CIDR; ignored (the other ranges still apply)`);
  return out;
}

/** kube-proxy serves health checks only for LoadBalancer Services with externalTrafficPolicy Local (NeedsHealthCheck). */
function healthCheckNodePortOf(spec: Record<string, unknown>, type: string, policy: TrafficPolicy, warn: Warn): number {
  if (type !== 'LoadBalancer' || policy !== 'Local') return 0;
  const h = spec.healthCheckNodePort;
  if (isPort(h)) return h;
  if (isUnset(h) || h === 0) warn('no spec.healthCheckNodePort for a LoadBalancer with externalTrafficPolicy Local; health checks not served');
  else warn(`spec.healthCheckNodePort ${show(h)} is not in 1..65535; health checks not served`);
  return 0;
}

interface PortSpec {
  portName: string;
  protocol: Protocol;
  port: number;
  nodePort: number;
}

/** Valid ports in spec order; a bad port is skipped with a problem, no valid port at all skips the Service. */
function portsOf(spec: Record<string, unknown>, type: string, warn: Warn): PortSpec[] {
  const x = spec.ports;
  if (x === undefined || x === null || (Array.isArray(x) && x.length === 0)) throw new Invalid('no ports (spec.ports is empty)');
  if (!Array.isArray(x)) throw new Invalid('spec.ports is not a list');
  const good: Array<PortSpec & { index: number }> = [];
  const bad: string[] = [];
  const notes: string[] = [];
  x.forEach((p: unknown, index) => {
    const where = `spec.ports[${index}]${isRecord(p) && typeof p.name === 'string' && p.name ? ` (${show(p.name)})` : ''}`;
    const r = checkPort(p, type);
    if (typeof r === 'string') return bad.push(`${where}: ${r}`);
    const sameName = good.find((g) => g.portName === r.portName);
    if (sameName) return bad.push(`${where}: duplicate port name ${show(r.portName)} (as spec.ports[${sameName.index}])`);
    const same = good.find((g) => g.port === r.port && g.protocol === r.protocol);
    if (same) return bad.push(`${where}: duplicate port ${r.port}/${r.protocol} (as spec.ports[${same.index}])`);
    // The API server rejects this too: two ports on one node port and protocol would be one dataplane key.
    const sameNode = r.nodePort === 0 ? undefined : good.find((g) => g.nodePort === r.nodePort && g.protocol === r.protocol);
    if (sameNode) return bad.push(`${where}: duplicate nodePort ${r.nodePort}/${r.protocol} (as spec.ports[${sameNode.index}])`);
    if (r.ignoredNodePort) notes.push(`${where}: nodePort ${r.ignoredNodePort} on a ClusterIP Service; nodePort ignored`);
    good.push({ portName: r.portName, protocol: r.protocol, port: r.port, nodePort: r.nodePort, index });
  });
  if (good.length === 0) throw new Invalid(`no valid port: ${bad.join('; ')}`);
  for (const b of bad) warn(`${b}; port skipped`);
  for (const n of notes) warn(n);
  return good.map(({ index: _index, ...p }) => p);
}

/** The port, or why it is invalid. */
function checkPort(p: unknown, type: string): string | (PortSpec & { ignoredNodePort: number }) {
  if (!isRecord(p)) return 'not an object';
  const portName = isUnset(p.name) ? '' : p.name;
  if (portName !== '' && !isDNSLabel(portName)) return `name ${show(portName)} is not a valid port name (RFC 1123 label)`;
  const protocol = protocolOf(p.protocol);
  if (!protocol) return `protocol ${show(p.protocol)} is not TCP, UDP or SCTP`;
  if (!isPort(p.port)) return `port ${show(p.port)} is not in 1..65535`;
  const nodePort = isUnset(p.nodePort) ? 0 : p.nodePort;
  if (nodePort !== 0 && !isPort(nodePort)) return `nodePort ${show(p.nodePort)} is not in 0..65535`;
  // Only NodePort and LoadBalancer Services have node ports (the API server rejects one on a ClusterIP Service).
  const ignored = type === 'ClusterIP' && nodePort !== 0;
  return { portName, protocol, port: p.port, nodePort: ignored ? 0 : nodePort, ignoredNodePort: ignored ? nodePort : 0 };
}

/**
 * A ServicePort: the spec with its endpoints. Every field is written out in one literal, in one order: spreading
 * the spec gave each of 30k objects its own hidden class in V8 (15 MB of shapes at 30k Services).
 */
export function withEndpoints(p: ServicePortSpec, endpoints: ServicePort['endpoints'], allEndpoints: ServicePort['allEndpoints']): ServicePort {
  return {
    key: p.key, namespace: p.namespace, name: p.name, portName: p.portName, protocol: p.protocol, port: p.port, nodePort: p.nodePort,
    clusterIPs: p.clusterIPs, externalIPs: p.externalIPs, loadBalancerIPs: p.loadBalancerIPs,
    externalTrafficPolicy: p.externalTrafficPolicy, internalTrafficPolicy: p.internalTrafficPolicy, sessionAffinity: p.sessionAffinity,
    healthCheckNodePort: p.healthCheckNodePort, loadBalancerSourceRanges: p.loadBalancerSourceRanges, ipvsScheduler: p.ipvsScheduler,
    endpointWeights: p.endpointWeights, createdAt: p.createdAt, endpoints, allEndpoints,
  };
}

/** One frozen empty list for every Service without external IPs etc. (an empty array per field per Service adds up). */
const EMPTY: string[] = Object.freeze([]) as unknown as string[];
function shared(list: string[]): string[] {
  return list.length === 0 ? EMPTY : list;
}

/** The usual affinity, shared (one object, not one per Service). */
const NO_AFFINITY: ServicePort['sessionAffinity'] = Object.freeze({ type: 'None' as const });
