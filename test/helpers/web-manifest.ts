// Manifests the CLI tests program, written once: an EndpointSlice for a Service port, and the smallest web Service.

export interface SliceEndpoint {
  address: string;
  nodeName?: string;
}

/**
 * The EndpointSlice `<service>-1` (IPv4) of one Service port: `portName` on `port`/`protocol` (default http,
 * 8080/TCP), the endpoints ready (the API's default when conditions are absent).
 */
export function endpointSlice(service: string, namespace: string, endpoints: Array<string | SliceEndpoint>, port = { name: 'http', port: 8080, protocol: 'TCP' }): string {
  const items = endpoints.map((e) => (typeof e === 'string' ? { address: e } : e));
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${service}-1, namespace: ${namespace}, labels: { kubernetes.io/service-name: ${service} } }
addressType: IPv4
ports: [{ name: ${port.name}, protocol: ${port.protocol}, port: ${port.port} }]
endpoints: [${items.map((e) => `{ addresses: [${e.address}]${e.nodeName ? `, nodeName: ${e.nodeName}` : ''} }`).join(', ')}]
`;
}

/** One TCP Service port (`t/web:http`, port 80 -> 8080) with its EndpointSlice: the smallest manifest a CLI test programs. */
export function webManifest(clusterIP: string, endpoints: string[]): string {
  return `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: t }
spec:
  clusterIP: ${clusterIP}
  ports: [{ name: http, protocol: TCP, port: 80, targetPort: 8080 }]
---
${endpointSlice('web', 't', endpoints)}`;
}
