// Small Services for the explain-against-the-kernel test (test/kernel/explain-agrees.test.ts): drawn from a seeded
// PRNG, so every run builds the same ones, and written as manifests for `svcplane sync --once`. A scenario is one
// Service with a TCP and a UDP port of one number, 0-2 endpoints among the sandbox's be0 and be1 (this node's or
// another's, ready or terminating), its traffic policies, and the addresses it answers on (ClusterIP, an external
// IP that may be a node address, a LoadBalancer IP with or without source ranges, NodePorts). Flags that are not
// per Service (nodePortAddresses, masquerading) make the groups: one sync per group.
import type { Sandbox } from '../../scripts/lib/sandbox';

export const NODE = 'node-a';
/** A network no client of the sandbox is in (TEST-NET-3): a source range that allows none of them. */
export const FOREIGN_RANGE = '203.0.113.0/24';

export type EndpointState = 'ready' | 'serving-terminating' | 'terminating';
export interface EndpointSpec {
  backend: number;
  local: boolean;
  state: EndpointState;
}

export interface ScenarioSpec {
  name: string;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  clusterIP: string;
  /** The Service port (TCP and UDP); unique per scenario, so an external IP that is a node address is its own. */
  port: number;
  nodePorts?: { TCP: number; UDP: number };
  externalIP?: string;
  lbIP?: string;
  sourceRanges?: string[];
  etp: 'Cluster' | 'Local';
  itp: 'Cluster' | 'Local';
  endpoints: EndpointSpec[];
  /** The backend namespace used as "a pod" client (be1 may also be an endpoint: a hairpin). */
  podClient: number;
}

export interface ProxyFlags {
  /** --nodeport-addresses (a CIDR, or `primary` with --node-ip); unset: every local address but loopback. */
  nodePortAddresses?: string;
  nodeIP?: string;
  clusterCIDR: boolean;
  masqueradeAll: boolean;
}

export interface ScenarioGroup {
  flags: ProxyFlags;
  scenarios: ScenarioSpec[];
}

/** mulberry32: a small, fast PRNG with a 32-bit state; the same seed gives the same scenarios on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Draws `perGroup` scenarios for each flag set, addresses and ports unique across all of them. */
export function drawGroups(sb: Sandbox, seed: number, flagSets: ProxyFlags[], perGroup: number): ScenarioGroup[] {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const chance = (p: number) => rnd() < p;
  let nextIP = 2;
  const serviceIP = () => sb.serviceIP(nextIP++).v4;
  let id = 0;
  const nodeAddresses = [sb.nodeIPs.v4, sb.podGateway.v4];
  return flagSets.map((flags) => ({
    flags,
    scenarios: Array.from({ length: perGroup }, (): ScenarioSpec => {
      const n = id++;
      const type = pick(['ClusterIP', 'NodePort', 'LoadBalancer'] as const);
      const externalIP = chance(0.4) ? (chance(0.4) ? pick(nodeAddresses) : serviceIP()) : undefined;
      const lb = type === 'LoadBalancer';
      const exposed = type !== 'ClusterIP' || externalIP !== undefined;
      const count = pick([0, 1, 1, 2, 2, 2]);
      const backends = chance(0.5) ? [0, 1] : [1, 0];
      return {
        name: `s${String(n).padStart(2, '0')}`,
        type,
        clusterIP: serviceIP(),
        port: 2000 + n,
        nodePorts: type === 'ClusterIP' ? undefined : { TCP: 30000 + 2 * n, UDP: 30001 + 2 * n },
        externalIP,
        lbIP: lb ? serviceIP() : undefined,
        sourceRanges: lb ? pick([undefined, undefined, [sb.clientCIDR.v4], [sb.podCIDR.v4], [FOREIGN_RANGE]]) : undefined,
        etp: exposed && chance(0.5) ? 'Local' : 'Cluster',
        itp: chance(0.3) ? 'Local' : 'Cluster',
        endpoints: backends.slice(0, count).map((backend) => ({
          backend,
          local: chance(0.5),
          state: pick(['ready', 'ready', 'ready', 'serving-terminating', 'terminating'] as const),
        })),
        podClient: chance(0.6) ? 2 : 1,
      };
    }),
  }));
}

/** One line saying what a scenario is, for reports. */
export function describeScenario(s: ScenarioSpec): string {
  const eps = s.endpoints.map((e) => `be${e.backend} ${e.local ? 'local' : 'remote'} ${e.state}`).join(', ');
  const parts = [`${s.name} ${s.type}`, `etp ${s.etp}`, `itp ${s.itp}`, `endpoints [${eps}]`];
  if (s.externalIP) parts.push(`externalIP ${s.externalIP}`);
  if (s.lbIP) parts.push(`LB ${s.lbIP}${s.sourceRanges ? ` ranges ${s.sourceRanges.join(',')}` : ''}`);
  parts.push(`pod client be${s.podClient}`);
  return parts.join(', ');
}

/** The `sync --once` flags of a group. */
export function syncFlags(sb: Sandbox, f: ProxyFlags): string[] {
  const out = ['--node-name', NODE];
  if (f.clusterCIDR) out.push('--cluster-cidr', sb.podCIDR.v4);
  if (f.masqueradeAll) out.push('--masquerade-all');
  if (f.nodePortAddresses) out.push('--nodeport-addresses', f.nodePortAddresses);
  if (f.nodeIP) out.push('--node-ip', f.nodeIP);
  return out;
}

export function describeFlags(f: ProxyFlags): string {
  const parts = [f.nodePortAddresses ? `nodePortAddresses ${f.nodePortAddresses}` : 'nodePortAddresses unset'];
  parts.push(f.masqueradeAll ? (f.clusterCIDR ? 'masquerade-all + cluster-cidr' : 'masquerade-all') : f.clusterCIDR ? 'cluster-cidr' : 'no masquerade flags');
  return parts.join(', ');
}

const CONDITIONS: Record<EndpointState, string> = {
  ready: '{ready: true, serving: true, terminating: false}',
  'serving-terminating': '{ready: false, serving: true, terminating: true}',
  terminating: '{ready: false, serving: false, terminating: true}',
};

/** A scenario's Service and EndpointSlice (one multi-document YAML string). */
export function scenarioManifest(sb: Sandbox, s: ScenarioSpec): string {
  const port = (proto: 'TCP' | 'UDP') =>
    `{name: ${proto.toLowerCase()}, protocol: ${proto}, port: ${s.port}, targetPort: 8080${s.nodePorts ? `, nodePort: ${s.nodePorts[proto]}` : ''}}`;
  const spec = [
    `  type: ${s.type}`,
    `  clusterIP: ${s.clusterIP}`,
    `  ports: [${port('TCP')}, ${port('UDP')}]`,
  ];
  if (s.externalIP) spec.push(`  externalIPs: [${s.externalIP}]`);
  if (s.type !== 'ClusterIP' || s.externalIP) spec.push(`  externalTrafficPolicy: ${s.etp}`);
  spec.push(`  internalTrafficPolicy: ${s.itp}`);
  if (s.sourceRanges) spec.push(`  loadBalancerSourceRanges: [${s.sourceRanges.join(', ')}]`);
  const service = [
    'apiVersion: v1',
    'kind: Service',
    `metadata: {name: ${s.name}, namespace: agree}`,
    'spec:',
    ...spec,
    ...(s.lbIP ? [`status: {loadBalancer: {ingress: [{ip: ${s.lbIP}}]}}`] : []),
  ].join('\n');
  const endpoints = s.endpoints.map((e) =>
    `  - addresses: [${sb.backends[e.backend].v4}]\n    conditions: ${CONDITIONS[e.state]}\n    nodeName: ${e.local ? NODE : 'node-b'}`);
  const slice = [
    'apiVersion: discovery.k8s.io/v1',
    'kind: EndpointSlice',
    `metadata: {name: ${s.name}-1, namespace: agree, labels: {kubernetes.io/service-name: ${s.name}}}`,
    'addressType: IPv4',
    'ports: [{name: tcp, protocol: TCP, port: 8080}, {name: udp, protocol: UDP, port: 8080}]',
    `endpoints:${endpoints.length ? `\n${endpoints.join('\n')}` : ' []'}`,
  ].join('\n');
  return `${service}\n---\n${slice}\n`;
}

export interface Target {
  proto: 'TCP' | 'UDP';
  addr: string;
  port: number;
  /** What the address is to the Service: ClusterIP, externalIP, LoadBalancer IP, NodePort. */
  role: string;
}

/** Every address:port a scenario's Service has, both protocols; NodePorts on each of the node's addresses. */
export function targetsOf(sb: Sandbox, s: ScenarioSpec): Target[] {
  const out: Target[] = [];
  for (const proto of ['TCP', 'UDP'] as const) {
    out.push({ proto, addr: s.clusterIP, port: s.port, role: 'ClusterIP' });
    if (s.externalIP) out.push({ proto, addr: s.externalIP, port: s.port, role: 'externalIP' });
    if (s.lbIP) out.push({ proto, addr: s.lbIP, port: s.port, role: 'LoadBalancer IP' });
    if (s.nodePorts) for (const a of [sb.nodeIPs.v4, sb.podGateway.v4]) out.push({ proto, addr: a, port: s.nodePorts[proto], role: 'NodePort' });
  }
  return out;
}

/** The ports a daemon on the node listens on, so a flow svcplane leaves alone is answered by the node itself. */
export function nodeDaemonPorts(groups: ScenarioGroup[]): number[] {
  const ports = new Set<number>();
  for (const g of groups) {
    for (const s of g.scenarios) {
      ports.add(s.port);
      if (s.nodePorts) {
        ports.add(s.nodePorts.TCP);
        ports.add(s.nodePorts.UDP);
      }
    }
  }
  return [...ports].sort((a, b) => a - b);
}
