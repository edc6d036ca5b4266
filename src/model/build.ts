// Services + EndpointSlices -> ProxyModel. buildServicePorts is the per-Service unit incremental sync rebuilds when
// a Service or one of its slices changes; buildProxyModel does the whole set (startup, manifests).

import type { KubeEndpointSlice, KubeService, ModelProblem, ProxyModel, ServiceKey, ServicePort, ServicePortKey } from './types';
import { flat, isDNSLabel, isRecord, namespaceOf, objectRef, show } from './guards';
import { SERVICE_NAME_LABEL, endpointsOfParsed, parseEndpointSlice, type ParsedSlice } from './endpoints';
import { serviceKeyOf, servicePortsOf, withEndpoints } from './service';
import { weightScaling } from './weights';

/** "ns/name" of the Service a slice belongs to (its kubernetes.io/service-name label, same namespace). */
export function sliceServiceKey(slice: KubeEndpointSlice): ServiceKey | undefined {
  const meta: unknown = isRecord(slice) ? slice.metadata : undefined;
  const labels = isRecord(meta) ? meta.labels : undefined;
  const name = isRecord(labels) ? labels[SERVICE_NAME_LABEL] : undefined;
  const ns = namespaceOf(meta);
  return isDNSLabel(name) && ns !== undefined ? flat(ns, '/', name) : undefined;
}

/**
 * The ServicePorts of one Service with their endpoints. SLICES should be the Service's slices (sliceServiceKey);
 * others are ignored. Each ServicePort keeps endpoints of both families: the dataplane pairs each ClusterIP with the
 * endpoints of its family. Slices are only validated when the Service is proxied, so a headless Service's slices
 * never produce problems.
 */
export function buildServicePorts(svc: KubeService, slicesOfService: KubeEndpointSlice[]): { ports: ServicePort[]; problems: ModelProblem[] } {
  const spec = servicePortsOf(svc);
  const problems = [...spec.problems];
  if (spec.ports.length === 0) return { ports: [], problems };
  const key = serviceKeyOf(svc);
  const parsed: ParsedSlice[] = [];
  for (const s of slicesOfService) {
    if (sliceServiceKey(s) !== key) continue;
    const r = parseEndpointSlice(s);
    problems.push(...r.problems);
    if (r.slice) parsed.push(r.slice);
  }
  const ports = spec.ports.map((p) => {
    const { all, chosen } = endpointsOfParsed(parsed, p);
    return withEndpoints(p, chosen, all);
  });
  for (const p of ports) problems.push(...servicePortProblems(p));
  return { ports, problems };
}

/** Problems of a Service port with its endpoints (beyond its spec's and slices'): weights scaled down. */
export function servicePortProblems(sp: ServicePort): ModelProblem[] {
  const scaled = weightScaling(sp.endpoints, sp.endpointWeights);
  return scaled ? [{ object: `Service ${sp.namespace}/${sp.name}`, message: `port ${sp.portName || sp.port}: ${scaled}` }] : [];
}

/** The whole model. Duplicate objects (same kind, namespace and name) are reported and the first one kept. */
export function buildProxyModel(services: KubeService[], slices: KubeEndpointSlice[]): ProxyModel {
  const problems: ModelProblem[] = [];
  const byKey = new Map<ServiceKey, KubeService>();
  const invalid: KubeService[] = [];
  for (const svc of services) {
    const key = serviceKeyOf(svc);
    if (key === undefined) invalid.push(svc); // servicePortsOf reports why
    else if (byKey.has(key)) problems.push({ object: `Service ${key}`, message: 'defined more than once; the first definition is used' });
    else byKey.set(key, svc);
  }

  const slicesByService = new Map<ServiceKey, KubeEndpointSlice[]>();
  const seenSlices = new Set<string>();
  for (const slice of slices) {
    // FQDN slices are not for proxies; kube-proxy ignores them without a word.
    if (isRecord(slice) && slice.addressType === 'FQDN') continue;
    const object = objectRef('EndpointSlice', isRecord(slice) ? slice.metadata : undefined);
    const key = sliceServiceKey(slice);
    if (key === undefined) {
      problems.push({ object, message: missingLabel(slice) });
      continue;
    }
    if (!byKey.has(key)) {
      problems.push({ object, message: `no Service ${key}; EndpointSlice ignored` });
      continue;
    }
    // A slice without a usable name is reported by parseEndpointSlice, not as a duplicate of another nameless one.
    const named = isRecord(slice.metadata) && typeof slice.metadata.name === 'string' && slice.metadata.name !== '';
    if (named && seenSlices.has(object)) {
      problems.push({ object, message: 'defined more than once; the first definition is used' });
      continue;
    }
    if (named) seenSlices.add(object);
    const group = slicesByService.get(key) ?? [];
    group.push(slice);
    slicesByService.set(key, group);
  }

  const ports: ServicePort[] = [];
  for (const svc of invalid) problems.push(...servicePortsOf(svc).problems);
  for (const key of [...byKey.keys()].sort(cmp)) {
    const r = buildServicePorts(byKey.get(key)!, slicesByService.get(key) ?? []);
    problems.push(...r.problems);
    ports.push(...r.ports);
  }
  ports.sort((a, b) => cmp(a.key, b.key));
  return { servicePorts: new Map<ServicePortKey, ServicePort>(ports.map((p) => [p.key, p])), problems };
}

function missingLabel(slice: KubeEndpointSlice): string {
  const meta: unknown = isRecord(slice) ? slice.metadata : undefined;
  const labels = isRecord(meta) ? meta.labels : undefined;
  const value = isRecord(labels) ? labels[SERVICE_NAME_LABEL] : undefined;
  if (value === undefined) return `no ${SERVICE_NAME_LABEL} label; EndpointSlice ignored`;
  if (namespaceOf(meta) === undefined) return `metadata.namespace ${show(isRecord(meta) ? meta.namespace : undefined)} is not a valid namespace; EndpointSlice ignored`;
  return `${SERVICE_NAME_LABEL} label ${show(value)} is not a valid Service name; EndpointSlice ignored`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
