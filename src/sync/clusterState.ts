// What the agent knows of the cluster: every Service and EndpointSlice, kept *parsed* (the ServicePort specs and
// the validated slices), never as the API objects themselves. A raw Service or slice as JSON.parse builds it costs
// several KB of heap (managedFields, annotations, status); at 30k Services that alone would break the agent's
// memory budget, and the parsed form is all a sync needs. Pure: events in, the keys of affected Services out.
import type { KubeEndpointSlice, KubeService, ModelProblem, ServiceKey, ServicePort } from '../model/types';
import { SERVICE_NAME_LABEL, endpointsOfParsed, parseEndpointSlice, type ParsedSlice } from '../model/endpoints';
import { serviceKeyOf, servicePortsOf, withEndpoints, type ServicePortsResult } from '../model/service';
import { servicePortProblems, sliceServiceKey } from '../model/build';
import { flat, isRecord, namespaceOf, objectRef } from '../model/guards';

/** The EndpointSlice controller's record of when the change behind a slice update happened (RFC 3339). */
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

interface ServiceEntry {
  resourceVersion?: string;
  spec: ServicePortsResult;
}

interface SliceEntry {
  resourceVersion?: string;
  service: ServiceKey;
  parsed?: ParsedSlice;
  problems: ModelProblem[];
}

/** A slice change as the tracker sees it: the Services it touches and, if annotated, when the change began. */
export interface SliceChange {
  services: ServiceKey[];
  /** Wall-clock ms of the annotation, when present and valid. */
  triggerTime?: number;
}

/** Most objects have no problems: one shared empty list, not one per object. */
const NO_PROBLEMS: ModelProblem[] = Object.freeze([]) as unknown as ModelProblem[];

export class ClusterState {
  private readonly services = new Map<ServiceKey, ServiceEntry>();
  private readonly slices = new Map<string, SliceEntry>();
  /** Slice refs per Service: an array (usually of one), not a Set: a Set per Service is ~250 bytes x 30k. */
  private readonly slicesByService = new Map<ServiceKey, string[]>();

  get serviceCount(): number {
    return this.services.size;
  }

  get sliceCount(): number {
    return this.slices.size;
  }

  serviceKeys(): IterableIterator<ServiceKey> {
    return this.services.keys();
  }

  /** Records a Service added or changed; returns its key, or a problem if it has no usable name. */
  upsertService(svc: KubeService): { key?: ServiceKey; problem?: ModelProblem } {
    const key = serviceKeyOf(svc);
    if (key === undefined) return { problem: servicePortsOf(svc).problems[0] ?? { object: objectRef('Service', svc?.metadata), message: 'no valid name or namespace; ignored' } };
    const rv = svc.metadata?.resourceVersion;
    const prev = this.services.get(key);
    // The same resourceVersion is the same object (a relist re-delivers everything): nothing to redo.
    if (prev && rv !== undefined && prev.resourceVersion === rv) return {};
    const spec = servicePortsOf(svc);
    if (spec.problems.length === 0) spec.problems = NO_PROBLEMS;
    this.services.set(key, { resourceVersion: rv, spec });
    return { key };
  }

  deleteService(svc: KubeService): ServiceKey | undefined {
    const key = serviceKeyOf(svc);
    if (key === undefined || !this.services.delete(key)) return undefined;
    return key;
  }

  /** Records a slice added or changed: the Services affected (both, if its service-name label moved). */
  upsertSlice(slice: KubeEndpointSlice): SliceChange & { problem?: ModelProblem } {
    const ref = sliceRef(slice);
    const service = sliceServiceKey(slice);
    if (ref === undefined || service === undefined) {
      return { services: [], problem: { object: objectRef('EndpointSlice', slice?.metadata), message: `no valid name, namespace or ${SERVICE_NAME_LABEL} label; ignored` } };
    }
    const rv = slice.metadata?.resourceVersion;
    const prev = this.slices.get(ref);
    if (prev && rv !== undefined && prev.resourceVersion === rv) return { services: [] };
    // FQDN slices are not for proxies (parseEndpointSlice returns neither slice nor problem for them).
    const r = parseEndpointSlice(slice);
    if (prev && prev.service !== service) this.unlink(prev.service, ref);
    this.slices.set(ref, { resourceVersion: rv, service, parsed: r.slice, problems: r.problems.length ? r.problems : NO_PROBLEMS });
    const refs = this.slicesByService.get(service);
    if (!refs) this.slicesByService.set(service, [ref]);
    else if (!refs.includes(ref)) refs.push(ref);
    const services = prev && prev.service !== service ? [prev.service, service] : [service];
    return { services, triggerTime: triggerTimeOf(slice) };
  }

  deleteSlice(slice: KubeEndpointSlice): SliceChange {
    const ref = sliceRef(slice);
    const prev = ref === undefined ? undefined : this.slices.get(ref);
    if (!ref || !prev) return { services: [] };
    this.slices.delete(ref);
    this.unlink(prev.service, ref);
    return { services: [prev.service], triggerTime: triggerTimeOf(slice) };
  }

  /**
   * A relist: the full set of Services now. Unchanged ones (same resourceVersion) cost nothing; ones gone while
   * the watch was down are deleted. Returns every affected key.
   */
  replaceServices(list: KubeService[]): { keys: ServiceKey[]; problems: ModelProblem[] } {
    const present = new Set<ServiceKey>();
    const r = this.upsertServices(list, present);
    return { keys: [...r.keys, ...this.deleteServicesExcept(present)], problems: r.problems };
  }

  replaceSlices(list: KubeEndpointSlice[]): { keys: ServiceKey[]; problems: ModelProblem[] } {
    const present = new Set<string>();
    const r = this.upsertSlices(list, present);
    return { keys: [...new Set([...r.keys, ...this.deleteSlicesExcept(present)])], problems: r.problems };
  }

  // A relist arrives page by page (the agent never holds a whole list of API objects: at 30k Services that would
  // be most of its memory): upsert each page, noting what is present, then delete what the list did not hold.

  upsertServices(list: KubeService[], present: Set<ServiceKey>): { keys: ServiceKey[]; problems: ModelProblem[] } {
    const keys: ServiceKey[] = [];
    const problems: ModelProblem[] = [];
    for (const svc of list) {
      const r = this.upsertService(svc);
      if (r.problem) problems.push(r.problem);
      const key = serviceKeyOf(svc);
      if (key !== undefined) present.add(key);
      if (r.key) keys.push(r.key);
    }
    return { keys, problems };
  }

  deleteServicesExcept(present: Set<ServiceKey>): ServiceKey[] {
    const keys: ServiceKey[] = [];
    for (const key of [...this.services.keys()]) if (!present.has(key)) {
      this.services.delete(key);
      keys.push(key);
    }
    return keys;
  }

  upsertSlices(list: KubeEndpointSlice[], present: Set<string>): { keys: ServiceKey[]; problems: ModelProblem[] } {
    const keys = new Set<ServiceKey>();
    const problems: ModelProblem[] = [];
    for (const slice of list) {
      const r = this.upsertSlice(slice);
      if (r.problem) problems.push(r.problem);
      const ref = sliceRef(slice);
      if (ref !== undefined) present.add(ref);
      for (const k of r.services) keys.add(k);
    }
    return { keys: [...keys], problems };
  }

  deleteSlicesExcept(present: Set<string>): ServiceKey[] {
    const keys = new Set<ServiceKey>();
    for (const [ref, e] of [...this.slices]) if (!present.has(ref)) {
      this.slices.delete(ref);
      this.unlink(e.service, ref);
      keys.add(e.service);
    }
    return [...keys];
  }

  /** The Service's ports with their endpoints now, and the problems of the Service and its slices. */
  servicePorts(key: ServiceKey): { ports: ServicePort[]; problems: ModelProblem[] } {
    const entry = this.services.get(key);
    if (!entry) return { ports: [], problems: [] };
    const problems = [...entry.spec.problems];
    if (entry.spec.ports.length === 0) return { ports: [], problems };
    const parsed: ParsedSlice[] = [];
    for (const ref of this.slicesByService.get(key) ?? []) {
      const s = this.slices.get(ref)!;
      problems.push(...s.problems);
      if (s.parsed) parsed.push(s.parsed);
    }
    const ports = entry.spec.ports.map((p) => {
      const { all, chosen } = endpointsOfParsed(parsed, p);
      return withEndpoints(p, chosen, all);
    });
    for (const p of ports) problems.push(...servicePortProblems(p));
    // The built ports serve as the spec from now on (a ServicePort is a spec with endpoints): keeping both would
    // hold two objects per Service port.
    entry.spec.ports = ports;
    return { ports, problems };
  }

  private unlink(service: ServiceKey, ref: string): void {
    const refs = this.slicesByService.get(service);
    if (!refs) return;
    const i = refs.indexOf(ref);
    if (i >= 0) refs.splice(i, 1);
    if (refs.length === 0) this.slicesByService.delete(service);
  }
}

function sliceRef(slice: KubeEndpointSlice): string | undefined {
  const meta = isRecord(slice) ? slice.metadata : undefined;
  const ns = namespaceOf(meta);
  const name = isRecord(meta) ? meta.name : undefined;
  return ns !== undefined && typeof name === 'string' && name !== '' ? flat(ns, '/', name) : undefined;
}

function triggerTimeOf(slice: KubeEndpointSlice): number | undefined {
  const v = slice.metadata?.annotations?.[TRIGGER_TIME_ANNOTATION];
  if (typeof v !== 'string') return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}
