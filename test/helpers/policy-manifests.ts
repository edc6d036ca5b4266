// Services exercising the traffic policies, termination and topology, for the sandbox's three backends:
// be0 is on this node (node-a, zone z1), be1 and be2 on other nodes as their EndpointSlices say (the sandbox wires
// every backend to this node; the slices decide what svcplane believes). Shared by the nftables kernel tests and the
// IPVS guest tests, so both modes are held to the same behaviour.
import type { Sandbox } from '../../scripts/lib/sandbox';

export const NODE = 'node-a';
export const ZONE = 'z1';

export const POLICY_IPS = {
  etpLocal: '198.18.100.60', // externalIP of etp-local; its ClusterIP is .70
  etpNone: '198.18.100.61', // externalIP of etp-none; ClusterIP .71
  itpLocal: '198.18.100.62',
  itpNone: '198.18.100.63',
  terminating: '198.18.100.64',
  terminatingOnly: '198.18.100.65',
  zoned: '198.18.100.66',
  zonedPartial: '198.18.100.67',
  sameNode: '198.18.100.68',
  weighted: '198.18.100.69',
  /** LoadBalancer IPs (status.loadBalancer.ingress) with loadBalancerSourceRanges. */
  fwAllow: '198.18.100.80',
  fwDeny: '198.18.100.81',
  fwOpen: '198.18.100.82',
} as const;

export const POLICY_NODEPORTS = { etpLocal: 30100, etpNone: 30101, fwDeny: 30102 } as const;

interface Ep {
  ip: string;
  node?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  zones?: string[];
  nodes?: string[];
}

function service(name: string, clusterIP: string, extra: { spec?: string; nodePort?: number; lbIP?: string } = {}): string {
  const type = extra.lbIP ? 'LoadBalancer' : extra.nodePort ? 'NodePort' : 'ClusterIP';
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: policy}
spec:
  type: ${type}
  clusterIP: ${clusterIP}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080${extra.nodePort ? `, nodePort: ${extra.nodePort}` : ''}}]
${extra.spec ?? ''}${extra.lbIP ? `status: {loadBalancer: {ingress: [{ip: ${extra.lbIP}}]}}\n` : ''}`;
}

function slice(name: string, eps: Ep[]): string {
  const lines = eps.map((e) => {
    const out = [`  - addresses: [${e.ip}]`];
    out.push(`    conditions: {ready: ${e.ready ?? true}, serving: ${e.serving ?? true}, terminating: ${e.terminating ?? false}}`);
    if (e.node) out.push(`    nodeName: ${e.node}`);
    const hints: string[] = [];
    if (e.zones) hints.push(`forZones: [${e.zones.map((z) => `{name: ${z}}`).join(', ')}]`);
    if (e.nodes) hints.push(`forNodes: [${e.nodes.map((n) => `{name: ${n}}`).join(', ')}]`);
    if (hints.length) out.push(`    hints: {${hints.join(', ')}}`);
    return out.join('\n');
  });
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-1, namespace: policy, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
${lines.join('\n')}
`;
}

/** The manifests (one multi-document YAML) and the Service port count they make. */
export function policyManifests(sb: Sandbox): { yaml: string; servicePorts: number } {
  const [b0, b1, b2] = sb.backends.map((b) => b.v4);
  const docs = [
    service('etp-local', '198.18.100.70', { nodePort: POLICY_NODEPORTS.etpLocal, spec: `  externalTrafficPolicy: Local\n  externalIPs: [${POLICY_IPS.etpLocal}]\n` }),
    slice('etp-local', [{ ip: b0, node: NODE }, { ip: b1, node: 'node-b' }, { ip: b2, node: 'node-b' }]),
    service('etp-none', '198.18.100.71', { nodePort: POLICY_NODEPORTS.etpNone, spec: `  externalTrafficPolicy: Local\n  externalIPs: [${POLICY_IPS.etpNone}]\n` }),
    slice('etp-none', [{ ip: b1, node: 'node-b' }, { ip: b2, node: 'node-b' }]),
    service('itp-local', POLICY_IPS.itpLocal, { spec: '  internalTrafficPolicy: Local\n' }),
    slice('itp-local', [{ ip: b0, node: NODE }, { ip: b1, node: NODE }, { ip: b2, node: 'node-b' }]),
    service('itp-none', POLICY_IPS.itpNone, { spec: '  internalTrafficPolicy: Local\n' }),
    slice('itp-none', [{ ip: b2, node: 'node-b' }]),
    service('terminating', POLICY_IPS.terminating),
    slice('terminating', [{ ip: b0 }, { ip: b1, ready: false, serving: true, terminating: true }, { ip: b2, ready: false, serving: false }]),
    service('terminating-only', POLICY_IPS.terminatingOnly),
    slice('terminating-only', [{ ip: b1, ready: false, serving: true, terminating: true }, { ip: b2, ready: false, serving: false, terminating: true }]),
    service('zoned', POLICY_IPS.zoned),
    slice('zoned', [{ ip: b0, zones: [ZONE] }, { ip: b1, zones: ['z2'] }, { ip: b2, zones: ['z2'] }]),
    service('zoned-partial', POLICY_IPS.zonedPartial),
    slice('zoned-partial', [{ ip: b0, zones: [ZONE] }, { ip: b1, zones: ['z2'] }, { ip: b2 }]),
    service('same-node', POLICY_IPS.sameNode),
    slice('same-node', [{ ip: b0, nodes: ['node-b'], zones: [ZONE] }, { ip: b1, nodes: [NODE], zones: [ZONE] }, { ip: b2, nodes: ['node-c'], zones: ['z2'] }]),
    // Endpoint weights 2 / 1 / 0 (svcplane.io/endpoint-weights).
    service('weighted', POLICY_IPS.weighted).replace('namespace: policy}', `namespace: policy, annotations: {svcplane.io/endpoint-weights: "${b0}=2, ${b1}=1, ${b2}=0"}}`),
    slice('weighted', [{ ip: b0 }, { ip: b1 }, { ip: b2 }]),
    // loadBalancerSourceRanges: the client's subnet allowed; only another network allowed; everything allowed.
    service('fw-allow', '198.18.100.90', { nodePort: 30103, lbIP: POLICY_IPS.fwAllow, spec: `  loadBalancerSourceRanges: [${sb.clientCIDR.v4}, 203.0.113.0/24]\n` }),
    slice('fw-allow', [{ ip: b0 }]),
    service('fw-deny', '198.18.100.91', { nodePort: POLICY_NODEPORTS.fwDeny, lbIP: POLICY_IPS.fwDeny, spec: '  loadBalancerSourceRanges: [203.0.113.0/24]\n' }),
    slice('fw-deny', [{ ip: b0 }]),
    service('fw-open', '198.18.100.92', { nodePort: 30104, lbIP: POLICY_IPS.fwOpen, spec: '  loadBalancerSourceRanges: [0.0.0.0/0]\n' }),
    slice('fw-open', [{ ip: b0 }]),
  ];
  return { yaml: docs.join('---\n'), servicePorts: 13 };
}
