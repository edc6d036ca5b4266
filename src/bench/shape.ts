// The common benchmark input: one list of Services (each with a single port) that every peer generator
// (kube-proxy nftables mode, kube-proxy iptables mode) and svcplane itself are fed, so that all of them
// program the same thing in the same run.
//
// Address plan (everything inside 198.18.0.0/15, the RFC 2544 benchmarking block, so it never collides with
// a real network on the host):
//
//   198.18.0.0/24    reserved for the caller: veths, the data-plane "target" Service's endpoint, clients.
//   198.19.0.0/24    reserved for the caller: the target Service's ClusterIP.
//   198.18.1.0 ..    filler endpoint (pod) IPs: 198.18.1.0 - 198.18.127.255, 32,512 distinct addresses.
//   198.18.127.255   Past that many endpoints in total the pool wraps round and endpoint IPs are REUSED by
//                    later Services (e.g. 5k x 50 = 250k endpoints use each address ~8 times; 10k x 2 = 20k
//                    endpoints are all distinct). Reuse is harmless for the rule sets: every generator keys
//                    its per-endpoint objects by (service, ip, port), as kube-proxy does.
//   198.19.1.0 ..    filler ClusterIPs: 198.19.1.0 - 198.19.255.255 (65,280), then spilling into
//   198.18.128.0/17  198.18.128.0 - 198.18.255.255 (32,768): at most 98,048 Services, each a distinct IP.
//
// POD_CIDR (198.18.0.0/17) is the "cluster CIDR" kube-proxy is told about (it holds every endpoint,
// including the reserved /24), and SERVICE_CIDRS are the Service CIDRs (they hold every ClusterIP).

export type BenchProtocol = 'TCP' | 'UDP';

export interface BenchEndpoint {
  ip: string;
  port: number;
}

export interface BenchService {
  namespace: string;
  name: string;
  clusterIP: string;
  /** Service port (the ClusterIP port). */
  port: number;
  protocol: BenchProtocol;
  nodePort?: number;
  endpoints: BenchEndpoint[];
  /**
   * The Service port's name (what kube-proxy puts in ServicePortName and so in chain names / comments).
   * Defaults to `p<port>` (the convention of kube-proxy's own tests, e.g. "p80").
   */
  portName?: string;
  /** sessionAffinity ClientIP with this timeoutSeconds (absent: None). */
  affinitySeconds?: number;
}

export interface TargetServiceSpec {
  clusterIP: string;
  port: number;
  endpoints: BenchEndpoint[];
  protocol?: BenchProtocol;
  nodePort?: number;
  namespace?: string;
  name?: string;
  portName?: string;
}

export interface MakeServicesOptions {
  /** Give Services NodePorts, allocated upwards from nodePortRange[0]. */
  withNodePorts?: boolean;
  /**
   * Inclusive NodePort range. Default [30000, 32767] (the apiserver's default, 2,768 ports): when there are
   * more Services than ports, only the first ones get a NodePort, the rest stay plain ClusterIP Services,
   * as on a real cluster. Pass e.g. [30000, 65535] to give (up to 35,536) Services one each.
   */
  nodePortRange?: [number, number];
  /**
   * The Service that data-plane runs send real traffic to. It replaces the LAST Service of the list
   * (the total stays `count`), which puts it last in kube-proxy's iptables KUBE-SERVICES chain: the worst
   * case for iptables' linear match. Filler Services never reuse its ClusterIP.
   */
  target?: TargetServiceSpec;
}

export const POD_CIDR = '198.18.0.0/17';
export const SERVICE_CIDRS: readonly string[] = ['198.19.0.0/16', '198.18.128.0/17'];
export const TARGET_NAMESPACE = 'bench-target';
export const TARGET_NAME = 'target';
/** Filler Services listen on this port ... */
export const FILLER_SERVICE_PORT = 80;
/** ... and their endpoints on this one. */
export const FILLER_ENDPOINT_PORT = 8080;
/** Services per namespace for filler Services (namespace `bench-<n>`, Service `svc-<i>`). */
export const SERVICES_PER_NAMESPACE = 100;

const ENDPOINT_POOL_START = ipv4ToInt('198.18.1.0');
const ENDPOINT_POOL_SIZE = ipv4ToInt('198.18.127.255') - ENDPOINT_POOL_START + 1; // 32,512
const CLUSTER_IP_RANGES: ReadonlyArray<readonly [number, number]> = [
  [ipv4ToInt('198.19.1.0'), ipv4ToInt('198.19.255.255')],
  [ipv4ToInt('198.18.128.0'), ipv4ToInt('198.18.255.255')],
];
export const MAX_SERVICES = CLUSTER_IP_RANGES.reduce((n, [a, b]) => n + (b - a + 1), 0); // 98,048

export function ipv4ToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${ip}`);
  let n = 0;
  for (const p of parts) {
    const v = Number(p);
    if (!/^\d{1,3}$/.test(p) || v > 255) throw new Error(`not an IPv4 address: ${ip}`);
    n = n * 256 + v;
  }
  return n;
}

export function intToIpv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** kube-proxy's ServicePortName.Port for this Service. */
export function portNameOf(svc: BenchService): string {
  return svc.portName ?? `p${svc.port}`;
}

/** kube-proxy's ServicePortName.String(): "namespace/name:portName" (":portName" omitted when empty). */
export function servicePortNameString(svc: BenchService): string {
  const pn = portNameOf(svc);
  return `${svc.namespace}/${svc.name}${pn === '' ? '' : `:${pn}`}`;
}

function* clusterIPs(avoid: number | undefined): Generator<number> {
  for (const [a, b] of CLUSTER_IP_RANGES) {
    for (let n = a; n <= b; n++) if (n !== avoid) yield n;
  }
}

/**
 * Deterministic list of `count` single-port Services with `endpointsPerService` endpoints each.
 * Same arguments, same output (no randomness).
 */
export function makeServices(
  count: number,
  endpointsPerService: number,
  opts: MakeServicesOptions = {},
): BenchService[] {
  if (!Number.isInteger(count) || count < 0) throw new Error(`bad service count ${count}`);
  if (!Number.isInteger(endpointsPerService) || endpointsPerService < 0) {
    throw new Error(`bad endpoints-per-service ${endpointsPerService}`);
  }
  const target = opts.target;
  const fillers = target && count > 0 ? count - 1 : count;
  if (fillers > MAX_SERVICES - 1) throw new Error(`at most ${MAX_SERVICES - 1} filler Services fit the address plan`);

  const [npLo, npHi] = opts.nodePortRange ?? [30000, 32767];
  if (opts.withNodePorts && !(npLo >= 1 && npHi <= 65535 && npLo <= npHi)) {
    throw new Error(`bad nodePortRange ${npLo}-${npHi}`);
  }
  const usedNodePorts = new Set<number>();
  if (target?.nodePort !== undefined) usedNodePorts.add(target.nodePort);
  let nextNodePort = npLo;
  const takeNodePort = (): number | undefined => {
    while (nextNodePort <= npHi && usedNodePorts.has(nextNodePort)) nextNodePort++;
    if (nextNodePort > npHi) return undefined;
    usedNodePorts.add(nextNodePort);
    return nextNodePort++;
  };

  const avoid = target ? ipv4ToInt(target.clusterIP) : undefined;
  const ips = clusterIPs(avoid);
  const out: BenchService[] = [];
  let ep = 0;
  for (let i = 0; i < fillers; i++) {
    const ip = ips.next();
    if (ip.done) throw new Error('ran out of ClusterIPs');
    const endpoints: BenchEndpoint[] = [];
    for (let e = 0; e < endpointsPerService; e++, ep++) {
      endpoints.push({ ip: intToIpv4(ENDPOINT_POOL_START + (ep % ENDPOINT_POOL_SIZE)), port: FILLER_ENDPOINT_PORT });
    }
    const svc: BenchService = {
      namespace: `bench-${Math.floor(i / SERVICES_PER_NAMESPACE)}`,
      name: `svc-${i}`,
      clusterIP: intToIpv4(ip.value),
      port: FILLER_SERVICE_PORT,
      protocol: 'TCP',
      endpoints,
    };
    if (opts.withNodePorts) {
      const np = takeNodePort();
      if (np !== undefined) svc.nodePort = np;
    }
    out.push(svc);
  }
  if (target && count > 0) {
    const svc: BenchService = {
      namespace: target.namespace ?? TARGET_NAMESPACE,
      name: target.name ?? TARGET_NAME,
      clusterIP: target.clusterIP,
      port: target.port,
      protocol: target.protocol ?? 'TCP',
      endpoints: target.endpoints.map((e) => ({ ip: e.ip, port: e.port })),
    };
    if (target.nodePort !== undefined) svc.nodePort = target.nodePort;
    if (target.portName !== undefined) svc.portName = target.portName;
    out.push(svc);
  }
  return out;
}

/** Total number of endpoints over all Services. */
export function totalEndpoints(services: readonly BenchService[]): number {
  let n = 0;
  for (const s of services) n += s.endpoints.length;
  return n;
}
