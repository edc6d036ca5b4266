// The proxy model: what svcplane programs, independent of any dataplane. Pure data, no I/O.
//
// Kubernetes objects come in (core/v1 Service, discovery.k8s.io/v1 EndpointSlice, as the API server sends them
// as JSON); a ServicePort per (Service, port) comes out, each with its addresses and its endpoints. Names follow
// kube-proxy's pkg/proxy (ServicePortName "namespace/name:port").

import type { EndpointWeights } from './weights';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type IPFamily = 4 | 6;

/** "namespace/name:portName" (portName may be empty: "ns/name:"), kube-proxy's ServicePortName.String(). */
export type ServicePortKey = string;

/** "namespace/name" of a Service. */
export type ServiceKey = string;

export interface Endpoint {
  /** IP address in canonical text form (IPv6 compressed, lower case). */
  address: string;
  family: IPFamily;
  /** Target port on the endpoint (resolved from the EndpointSlice port with the same name and protocol). */
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  zone?: string;
  /** EndpointSlice hints (hints.forZones / hints.forNodes names), when the slice gives them. */
  zoneHints?: readonly string[];
  nodeHints?: readonly string[];
}

export type TrafficPolicy = 'Cluster' | 'Local';

export interface ServicePort {
  key: ServicePortKey;
  namespace: string;
  name: string;
  /** Port name from the Service spec ("" for a single unnamed port). */
  portName: string;
  protocol: Protocol;
  /** The Service port (what clients connect to on ClusterIP, externalIPs and LoadBalancer IPs). */
  port: number;
  /** spec.ports[].nodePort, 0 when none. */
  nodePort: number;
  /** ClusterIPs of the families this Service has (spec.clusterIPs, falling back to spec.clusterIP). */
  clusterIPs: string[];
  externalIPs: string[];
  /** status.loadBalancer.ingress[].ip, excluding entries with ipMode "Proxy". */
  loadBalancerIPs: string[];
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  sessionAffinity: { type: 'None' } | { type: 'ClientIP'; timeoutSeconds: number };
  healthCheckNodePort: number;
  loadBalancerSourceRanges: string[];
  /** The svcplane.io/ipvs-scheduler annotation as written (the IPVS dataplane validates it). */
  ipvsScheduler?: string;
  /** The svcplane.io/endpoint-weights annotation, parsed (model/weights.ts); undefined: every endpoint weighs 1. */
  endpointWeights?: EndpointWeights;
  /**
   * metadata.creationTimestamp as the API server wrote it (RFC 3339, seconds, UTC), "" when absent (hand-written
   * manifests; optional for ports built by hand in tests and benchmarks): decides which of two Services claiming one address:port keeps it (model/precedence.ts).
   */
  createdAt?: string;
  /** Endpoints after kube-proxy's choice: ready ones; if none, serving-terminating ones. Sorted by address, port. */
  endpoints: Endpoint[];
  /** Every endpoint the slices listed for this port (before the choice above), for status/explain. */
  allEndpoints: Endpoint[];
}

/** One problem found in the input: the object is skipped (or one of its parts is), the rest goes on. */
export interface ModelProblem {
  /** "Service ns/name", "EndpointSlice ns/name", or "file path#document" for manifest-level problems. */
  object: string;
  message: string;
}

export interface ProxyModel {
  /** Keyed by ServicePortKey, in sorted key order. */
  servicePorts: Map<ServicePortKey, ServicePort>;
  problems: ModelProblem[];
}

/** Minimal shapes of the Kubernetes objects we read. Everything is optional: input is untrusted. */
export interface KubeObjectMeta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  creationTimestamp?: string;
}

export interface KubeService {
  apiVersion?: string;
  kind?: string;
  metadata?: KubeObjectMeta;
  spec?: {
    type?: string;
    clusterIP?: string;
    clusterIPs?: string[];
    ipFamilies?: string[];
    externalIPs?: string[];
    externalName?: string;
    ports?: Array<{ name?: string; protocol?: string; port?: number; targetPort?: number | string; nodePort?: number }>;
    sessionAffinity?: string;
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
    externalTrafficPolicy?: string;
    internalTrafficPolicy?: string;
    healthCheckNodePort?: number;
    loadBalancerSourceRanges?: string[];
    trafficDistribution?: string;
  };
  status?: { loadBalancer?: { ingress?: Array<{ ip?: string; hostname?: string; ipMode?: string }> } };
}

export interface KubeEndpointSlice {
  apiVersion?: string;
  kind?: string;
  metadata?: KubeObjectMeta;
  addressType?: string;
  endpoints?: Array<{
    addresses?: string[];
    conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
    nodeName?: string;
    zone?: string;
    hints?: { forZones?: Array<{ name?: string }>; forNodes?: Array<{ name?: string }> };
  }>;
  ports?: Array<{ name?: string; protocol?: string; port?: number }>;
}
