// Runtime checks for untrusted input. The Kube* types say what fields *should* look like, but objects come from
// hand-written manifests and JSON, so every field is checked before use (a string where a list belongs must yield a
// problem, not a crash).

export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export function isInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x);
}

/** 1..65535, as Kubernetes validates ports. */
export function isPort(x: unknown): x is number {
  return isInt(x) && x >= 1 && x <= 65535;
}

/** RFC 1123 label (Kubernetes' IsDNS1123Label): namespaces, Service and port names. */
export function isDNSLabel(x: unknown): x is string {
  return typeof x === 'string' && x.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(x);
}

/** RFC 1123 subdomain (IsDNS1123Subdomain): EndpointSlice names are generated as "<service>-<suffix>" subdomains. */
export function isDNSSubdomain(x: unknown): x is string {
  return (
    typeof x === 'string' &&
    x.length <= 253 &&
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(x)
  );
}

/** JSON text of a value for messages, shortened so a huge bogus field cannot flood the log. */
export function show(x: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(x) ?? String(x);
  } catch {
    s = String(x);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** The namespace of an object: absent or "" means "default", as kubectl apply assumes. Undefined if invalid. */
export function namespaceOf(meta: unknown): string | undefined {
  const ns = isRecord(meta) ? meta.namespace : undefined;
  if (ns === undefined || ns === null || ns === '') return 'default';
  return isDNSLabel(ns) ? ns : undefined;
}

/** "Kind ns/name" for problems, readable even when the name or namespace is missing or bogus. */
export function objectRef(kind: string, meta: unknown): string {
  const m = isRecord(meta) ? meta : {};
  const ns = m.namespace === undefined || m.namespace === null || m.namespace === '' ? 'default' : m.namespace;
  const name = m.name === undefined || m.name === null || m.name === '' ? '<no name>' : m.name;
  const part = (v: unknown): string => (typeof v === 'string' ? v : show(v));
  return flat(kind, ' ', part(ns), '/', part(name));
}

/** A Service or EndpointSlice port protocol: absent means TCP (the API server's default). Undefined if invalid. */
export function protocolOf(x: unknown): 'TCP' | 'UDP' | 'SCTP' | undefined {
  if (x === undefined || x === null || x === '') return 'TCP';
  return x === 'TCP' || x === 'UDP' || x === 'SCTP' ? x : undefined;
}

/** Absent, null and "" all mean "not set" in Kubernetes' JSON. */
export function isUnset(x: unknown): x is undefined | null | '' {
  return x === undefined || x === null || x === '';
}

/**
 * Concatenation into a flat string. Keys and names the agent keeps for every Service and slice are built with
 * this: a template literal makes a cons string (a 32-byte wrapper per join, kept alive with the string), which at
 * 30k Services is megabytes of wrappers.
 */
export function flat(...parts: Array<string | number>): string {
  return parts.join('');
}
