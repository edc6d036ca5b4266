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
