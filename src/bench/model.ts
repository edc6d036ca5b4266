// Bench Services (shape.ts) as svcplane's model, so svcplane and the peers program the same thing.
import type { Endpoint, ServicePort, ServicePortKey } from '../model/types';
import type { BenchService } from './shape';
import { portNameOf } from './shape';

/**
 * The node a bench endpoint runs on: one /24 of the pod range per node (the default node podCIDR size), so the
 * 32k-address endpoint pool spreads over ~127 nodes. svcplane runs as BENCH_NODE, as a real node agent would.
 */
export function benchNodeOf(ip: string): string {
  const octet = ip.split('.')[2];
  // Interned, as node names decoded from an API response are: one string per node, not one per endpoint.
  let name = nodeNames.get(octet);
  if (!name) nodeNames.set(octet, (name = `node-${octet}`));
  return name;
}
const nodeNames = new Map<string, string>();
export const BENCH_NODE = 'node-2';

export function toServicePort(b: BenchService): ServicePort {
  const portName = portNameOf(b);
  const endpoints: Endpoint[] = b.endpoints.map((e) => ({
    address: e.ip, family: 4, port: e.port, ready: true, serving: true, terminating: false, nodeName: benchNodeOf(e.ip),
  }));
  return {
    key: `${b.namespace}/${b.name}:${portName}`,
    namespace: b.namespace,
    name: b.name,
    portName,
    protocol: b.protocol,
    port: b.port,
    nodePort: b.nodePort ?? 0,
    clusterIPs: [b.clusterIP],
    externalIPs: [],
    loadBalancerIPs: [],
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    sessionAffinity: b.affinitySeconds ? { type: 'ClientIP', timeoutSeconds: b.affinitySeconds } : { type: 'None' },
    healthCheckNodePort: 0,
    loadBalancerSourceRanges: [],
    endpoints,
    allEndpoints: endpoints,
  };
}

export function toModel(services: BenchService[]): Map<ServicePortKey, ServicePort> {
  const m = new Map<ServicePortKey, ServicePort>();
  for (const b of services) {
    const sp = toServicePort(b);
    m.set(sp.key, sp);
  }
  return m;
}
