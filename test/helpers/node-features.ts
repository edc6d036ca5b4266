// Manifests for the node-level settings of issue 5 (nodePortAddresses, masqueradeAll, cluster-CIDR detection,
// LoadBalancer ipMode Proxy), shared by the nftables kernel test and the IPVS guest test.
import type { Sandbox } from '../../scripts/lib/sandbox';

export const FEATURE_IPS = { clusterIP: '198.18.100.30', lbVip: '198.18.100.31', lbProxy: '198.18.100.32' } as const;
export const FEATURE_NODEPORT = 30130;

export function featureManifests(sb: Sandbox): string {
  return `apiVersion: v1
kind: Service
metadata: {name: edge, namespace: features}
spec:
  type: LoadBalancer
  clusterIP: ${FEATURE_IPS.clusterIP}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: ${FEATURE_NODEPORT}}]
status:
  loadBalancer:
    ingress: [{ip: ${FEATURE_IPS.lbVip}, ipMode: VIP}, {ip: ${FEATURE_IPS.lbProxy}, ipMode: Proxy}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: edge-1, namespace: features, labels: {kubernetes.io/service-name: edge}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
${sb.backends.map((b) => `  - addresses: [${b.v4}]`).join('\n')}
`;
}

/**
 * A LoadBalancer whose LB IP is a local address of the node (as VIP-style load balancers often make it) and whose
 * source ranges hold the node's primary address: the node's own requests to it come from the LB IP itself, which
 * kube-proxy then allows (allowFromNode). The test adds FEATURE_LOCAL_LB on the node's lo.
 */
export const FEATURE_LOCAL_LB = '198.18.100.33';

export function localLbManifest(sb: Sandbox): string {
  return `apiVersion: v1
kind: Service
metadata: {name: local-lb, namespace: features}
spec:
  type: LoadBalancer
  clusterIP: 198.18.100.34
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30131}]
  loadBalancerSourceRanges: [${sb.nodeIPs.v4}/32]
status:
  loadBalancer:
    ingress: [{ip: ${FEATURE_LOCAL_LB}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-lb-1, namespace: features, labels: {kubernetes.io/service-name: local-lb}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
  - addresses: [${sb.backends[0].v4}]
`;
}
