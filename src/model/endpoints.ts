// discovery.k8s.io/v1 EndpointSlices -> the endpoints of one ServicePort, following kube-proxy's
// pkg/proxy/endpointslicecache.go (endpointInfoByServicePort) and topology.go (CategorizeEndpoints).
//
// A slice is validated once (parseEndpointSlice), so a malformed endpoint yields one problem however many ports the
// Service has; endpointsOfParsed then picks, per port, the endpoints of the slice port with the same name and
// protocol.

import type { Endpoint, IPFamily, KubeEndpointSlice, ModelProblem, Protocol } from './types';
import { isDNSLabel, isDNSSubdomain, isPort, isRecord, isUnset, namespaceOf, objectRef, protocolOf, show } from './guards';
import { bytesToIp, compareIPBytes, ipToBytes, parseIP, specialAddress } from './ip';

/** The label tying an EndpointSlice to its Service (discovery.k8s.io/v1 LabelServiceName). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface SlicePort {
  name: string;
  protocol: Protocol;
  port: number;
}

/** An endpoint of a valid slice, before a port is attached. */
export interface SliceEndpoint {
  address: string;
  family: IPFamily;
  /**
   * The slice's port when it has exactly one (the usual case): the endpoint is then already the Endpoint a
   * Service port gets, and is shared instead of copied (the agent keeps both for every endpoint of the cluster).
   */
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  zone?: string;
  zoneHints?: readonly string[];
  nodeHints?: readonly string[];
}

export interface ParsedSlice {
  namespace: string;
  name: string;
  family: IPFamily;
  ports: SlicePort[];
  endpoints: SliceEndpoint[];
}

export interface EndpointsResult {
  /** Every endpoint of the port, deduplicated, sorted by (family, address bytes, port). */
  all: Endpoint[];
  /** What traffic goes to (kube-proxy's Cluster-policy choice), same order. */
  chosen: Endpoint[];
  problems: ModelProblem[];
}

/**
 * Validates one slice. FQDN slices are not for proxies (kube-proxy ignores them), so they give neither a slice nor
 * a problem. A slice-level error (no name, unknown addressType...) gives no slice and one problem; a bad port or
 * endpoint is skipped with one problem each, the rest of the slice is kept.
 */
export function parseEndpointSlice(slice: KubeEndpointSlice): { slice?: ParsedSlice; problems: ModelProblem[] } {
  const meta: unknown = isRecord(slice) ? slice.metadata : undefined;
  const object = objectRef('EndpointSlice', meta);
  const fail = (message: string) => ({ problems: [{ object, message: `${message}; EndpointSlice ignored` }] });
  if (!isRecord(slice)) return fail('not an object');
  if (!isRecord(meta) || isUnset(meta.name)) return fail('no metadata.name');
  if (!isDNSSubdomain(meta.name)) return fail(`metadata.name ${show(meta.name)} is not a valid name`);
  const namespace = namespaceOf(meta);
  if (namespace === undefined) return fail(`metadata.namespace ${show(meta.namespace)} is not a valid namespace`);
  if (slice.addressType === 'FQDN') return { problems: [] };
  if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') {
    return fail(`addressType ${show(slice.addressType)} is not IPv4, IPv6 or FQDN`);
  }
  const family: IPFamily = slice.addressType === 'IPv4' ? 4 : 6;
  const rawPorts: unknown = slice.ports;
  const rawEndpoints: unknown = slice.endpoints;
  if (!isUnset(rawPorts) && !Array.isArray(rawPorts)) return fail('ports is not a list');
  if (!isUnset(rawEndpoints) && !Array.isArray(rawEndpoints)) return fail('endpoints is not a list');

  const problems: ModelProblem[] = [];
  const warn = (message: string) => problems.push({ object, message });
  const ports: SlicePort[] = [];
  (Array.isArray(rawPorts) ? rawPorts : []).forEach((p: unknown, i) => {
    const r = checkSlicePort(p);
    if (typeof r === 'string') return warn(`ports[${i}]: ${r}; port skipped`);
    // kube-proxy keys endpoints by port name, so a second port of the same name and protocol would be ambiguous.
    if (ports.some((q) => q.name === r.name && q.protocol === r.protocol)) {
      return warn(`ports[${i}]: duplicate port name ${show(r.name)} for ${r.protocol}; port skipped`);
    }
    ports.push(r);
  });
  const endpoints: SliceEndpoint[] = [];
  (Array.isArray(rawEndpoints) ? rawEndpoints : []).forEach((e: unknown, i) => {
    const r = checkEndpoint(e, family, ports.length === 1 ? ports[0].port : 0);
    if (typeof r === 'string') return warn(`endpoints[${i}]: ${r}; endpoint skipped`);
    endpoints.push(r);
  });
  return { slice: { namespace, name: meta.name, family, ports, endpoints }, problems };
}

function checkSlicePort(p: unknown): SlicePort | string {
  if (!isRecord(p)) return 'not an object';
  const name = isUnset(p.name) ? '' : p.name;
  if (name !== '' && !isDNSLabel(name)) return `name ${show(name)} is not a valid port name`;
  const protocol = protocolOf(p.protocol);
  if (!protocol) return `protocol ${show(p.protocol)} is not TCP, UDP or SCTP`;
  // A nil port means "all ports" in the API, which a proxy cannot program (kube-proxy ignores such ports too).
  if (!isPort(p.port)) return `port ${show(p.port)} is not in 1..65535`;
  return { name, protocol, port: p.port };
}

function checkEndpoint(e: unknown, family: IPFamily, port: number): SliceEndpoint | string {
  if (!isRecord(e)) return 'not an object';
  // The API allows several addresses but says consumers use the first (kube-proxy: endpoint.Addresses[0]).
  if (!Array.isArray(e.addresses) || e.addresses.length === 0) return 'no addresses';
  const ip = parseIP(e.addresses[0]);
  if (!ip) return `address ${show(e.addresses[0])} is not a valid IP address`;
  const special = specialAddress(ip);
  if (special) return `address ${show(e.addresses[0])} is ${special}, which cannot be an endpoint's (the API server refuses it)`;
  if (ip.family !== family) return `address ${show(e.addresses[0])} is not IPv${family} as the slice's addressType says`;
  const c: unknown = e.conditions ?? {};
  if (!isRecord(c)) return 'conditions is not an object';
  for (const k of ['ready', 'serving', 'terminating'] as const) {
    if (c[k] !== undefined && c[k] !== null && typeof c[k] !== 'boolean') return `conditions.${k} ${show(c[k])} is not a boolean`;
  }
  // A nil ready is true and a nil terminating false (discovery/v1). A nil serving is read as true, as kube-proxy's
  // endpointslicecache.go and today's API text do (the API once said it defers to ready; they differ only for
  // ready=false with serving unset, where kube-proxy keeps the endpoint as a terminating fallback).
  const ready = typeof c.ready === 'boolean' ? c.ready : true;
  const serving = typeof c.serving === 'boolean' ? c.serving : true;
  const terminating = c.terminating === true;
  // No address bytes kept: the agent holds every slice parsed, and a Buffer per endpoint is most of its weight.
  const out: SliceEndpoint = { address: bytesToIp(ip.bytes), family, port, ready, serving, terminating };
  if (typeof e.nodeName === 'string' && e.nodeName !== '') out.nodeName = intern(e.nodeName);
  if (typeof e.zone === 'string' && e.zone !== '') out.zone = intern(e.zone);
  // Topology hints (kube-proxy reads hints.forZones always, hints.forNodes for PreferSameNode). Malformed entries
  // are ignored, as an endpoint without hints: that only turns topology off for the Service port.
  const hints: unknown = e.hints;
  if (isRecord(hints)) {
    const names = (list: unknown) => (Array.isArray(list) ? list.map((h: unknown) => (isRecord(h) && typeof h.name === 'string' && h.name !== '' ? h.name : undefined)).filter((n): n is string => n !== undefined) : []);
    const zones = names(hints.forZones);
    const nodes = names(hints.forNodes);
    if (zones.length) out.zoneHints = internList(zones);
    if (nodes.length) out.nodeHints = internList(nodes);
  }
  return out;
}

function rank(e: SliceEndpoint): number {
  return e.ready ? 2 : e.serving ? 1 : 0;
}

/**
 * The endpoints of one Service port. kube-proxy matches the Service port to the slice port by name (the slice port
 * carries the number the endpoint's pod resolved a named targetPort to); protocol must match as well.
 */
export function endpointsOfParsed(slices: ParsedSlice[], port: { portName: string; protocol: Protocol }): { all: Endpoint[]; chosen: Endpoint[] } {
  const ordered = [...slices].sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name));
  // The same address:port may be listed by several slices (e.g. while the controller moves endpoints between
  // slices); kube-proxy merges them. Keep one, the most usable (ready over serving over neither), first on a tie.
  const byKey = new Map<string, { e: SliceEndpoint; port: number }>();
  for (const s of ordered) {
    const sp = s.ports.find((p) => p.name === port.portName && p.protocol === port.protocol);
    if (!sp) continue;
    for (const e of s.endpoints) {
      const key = `${e.address}|${sp.port}`;
      const prev = byKey.get(key);
      if (!prev || rank(e) > rank(prev.e)) byKey.set(key, { e, port: sp.port });
    }
  }
  const sorted = [...byKey.values()].map((v) => ({ ...v, bytes: ipToBytes(v.e.address) })).sort((a, b) => compareIPBytes(a.bytes, b.bytes) || a.port - b.port);
  const all = sorted.map(({ e, port: p }) => toEndpoint(e, p));
  // CategorizeEndpoints: ready endpoints; if there are none, the serving terminating ones (so connections drain to
  // pods still able to serve during a rollout). kube-proxy runs one proxier per IP family, so the fallback is
  // decided per family.
  const chosen: Endpoint[] = [];
  for (const family of [4, 6] as const) {
    const of = all.filter((e) => e.family === family);
    const ready = of.filter((e) => e.ready);
    chosen.push(...(ready.length > 0 ? ready : of.filter((e) => e.serving && e.terminating)));
  }
  // Usually every endpoint is chosen: share the one array (the agent keeps both for every Service port).
  if (chosen.length === all.length && chosen.every((e, i) => e === all[i])) return { all, chosen: all };
  return { all, chosen };
}

/** Parses the slices and picks the endpoints of one port. Problems are those of the slices themselves. */
export function endpointsOf(slices: KubeEndpointSlice[], port: { portName: string; protocol: Protocol }): EndpointsResult {
  const problems: ModelProblem[] = [];
  const parsed: ParsedSlice[] = [];
  for (const s of slices) {
    const r = parseEndpointSlice(s);
    problems.push(...r.problems);
    if (r.slice) parsed.push(r.slice);
  }
  return { ...endpointsOfParsed(parsed, port), problems };
}

function toEndpoint(e: SliceEndpoint, port: number): Endpoint {
  if (e.port === port) return e; // same fields, same order (same hidden class)
  const out: Endpoint = { address: e.address, family: e.family, port, ready: e.ready, serving: e.serving, terminating: e.terminating };
  if (e.nodeName !== undefined) out.nodeName = e.nodeName;
  if (e.zone !== undefined) out.zone = e.zone;
  if (e.zoneHints !== undefined) out.zoneHints = e.zoneHints;
  if (e.nodeHints !== undefined) out.nodeHints = e.nodeHints;
  return out;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Node and zone names repeat across every endpoint of a cluster, and JSON.parse makes a new string for each: keep
 * one. Bounded, so a stream of unique names cannot grow it without end.
 */
const interned = new Map<string, string>();
const internedLists = new Map<string, readonly string[]>();
/** Hint lists repeat too (one zone per endpoint, a handful of zones): one frozen array per distinct list. */
function internList(list: string[]): readonly string[] {
  const key = list.join('\0');
  const have = internedLists.get(key);
  if (have) return have;
  if (internedLists.size >= 10_000) internedLists.clear();
  const frozen = Object.freeze(list.map(intern));
  internedLists.set(key, frozen);
  return frozen;
}
function intern(s: string): string {
  const have = interned.get(s);
  if (have !== undefined) return have;
  if (interned.size >= 100_000) interned.clear();
  interned.set(s, s);
  return s;
}
