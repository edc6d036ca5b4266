// A ServicePort model object for unit tests of the dataplanes: one TCP port 80 (`default/<name>:http`) on ClusterIP
// 198.18.100.10 with two ready endpoints on 8080, anything else given in `over`.
import type { Endpoint, ServicePort, ServicePortKey } from '../../src/model/types';

export const ep = (address: string, port = 8080, nodeName?: string): Endpoint => ({ address, family: address.includes(':') ? 6 : 4, port, ready: true, serving: true, terminating: false, nodeName });

export function servicePort(name: string, over: Partial<ServicePort> = {}): ServicePort {
  const endpoints = over.endpoints ?? [ep('198.18.2.11'), ep('198.18.2.12')];
  return {
    key: `default/${name}:http`, namespace: 'default', name, portName: 'http', protocol: 'TCP', port: 80, nodePort: 0,
    clusterIPs: ['198.18.100.10'], externalIPs: [], loadBalancerIPs: [], externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster', sessionAffinity: { type: 'None' }, healthCheckNodePort: 0, loadBalancerSourceRanges: [],
    endpoints, allEndpoints: endpoints, ...over,
  };
}

/** Service ports by key, as a sync takes them. */
export const portsOf = (...list: ServicePort[]) => new Map<ServicePortKey, ServicePort>(list.map((p) => [p.key, p]));
