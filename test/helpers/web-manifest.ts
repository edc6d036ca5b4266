// One TCP Service port (`t/web:http`, port 80 -> 8080) with its EndpointSlice: the smallest manifest a CLI test
// programs, written once.
export function webManifest(clusterIP: string, endpoints: string[]): string {
  return `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: t }
spec:
  clusterIP: ${clusterIP}
  ports: [{ name: http, protocol: TCP, port: 80, targetPort: 8080 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, namespace: t, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: http, protocol: TCP, port: 8080 }]
endpoints: [${endpoints.map((a) => `{ addresses: [${a}] }`).join(', ')}]
`;
}
