// An API-server double: the Kubernetes list/watch wire protocol over HTTP (or HTTPS), for Services, EndpointSlices and
// Nodes, faithful to what kube-apiserver (with its watch cache) sends, as the API Concepts page documents it
// (https://kubernetes.io/docs/reference/using-api/api-concepts/). No kube-apiserver can run on these machines, so
// this is the peer the agent's watch path is tested (and benchmarked) against. Test tooling, not product code.
//
// What it implements, and how the real server behaves there:
// * One global resourceVersion (etcd's revision): every write bumps it and stamps the object.
// * LIST  GET <collection>[?limit=N&continue=T&fieldSelector=metadata.name=X&labelSelector=...]
//   -> {kind: "<Kind>List", apiVersion, metadata: {resourceVersion, continue?, remainingItemCount?}, items}; items
//   carry no kind/apiVersion (the real server omits them in lists). Pages are consistent snapshots: a continue
//   token pins the list's resourceVersion; a token older than the retained history is 410 Gone (reason Expired).
// * WATCH GET <collection>?watch=true&resourceVersion=RV[&allowWatchBookmarks=true&timeoutSeconds=S]
//   -> 200, Transfer-Encoding: chunked, one JSON event per line: {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
//   "object": {...}}; objects carry kind/apiVersion. Events strictly after RV are replayed from history first.
//   RV older than the retained history -> 200 then one ERROR event whose object is a Status with code 410,
//   reason "Expired" ("too old resource version"), then the stream ends: exactly what the watch cache does.
//   RV unset or "0" -> synthetic ADDED events for the current state, then changes (legacy "any" semantics).
//   BOOKMARK objects are {kind, apiVersion, metadata: {resourceVersion}} only, sent every bookmarkIntervalMs
//   when the client asked for them. timeoutSeconds ends the stream cleanly (a zero-length chunk).
// * Test controls: apply/remove objects, dropWatches() (connections cut mid-stream), expireWatches() (every open
//   watch gets ERROR 410 and history is compacted), compact(), pause()/resume() (the server disappears: listening
//   socket closed and every connection reset, then back on the same port), request counters.
// * Faults (setFault), what broken servers and proxies in between do: requests that never get response headers,
//   list bodies trickling a byte at a time, watches closed at once with no event, every watch answered 410,
//   every request answered 429/503 with Retry-After; sendLongLine() writes an endless line to open watches.
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';

export type ResourceKind = 'Service' | 'EndpointSlice' | 'Node' | 'ServiceCIDR';

interface ResourceDef {
  kind: ResourceKind;
  apiVersion: string;
  namespaced: boolean;
  /** Path prefix of the group/version ("/api/v1", "/apis/discovery.k8s.io/v1") and the plural. */
  prefix: string;
  plural: string;
}

const RESOURCES: ResourceDef[] = [
  { kind: 'Service', apiVersion: 'v1', namespaced: true, prefix: '/api/v1', plural: 'services' },
  { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', namespaced: true, prefix: '/apis/discovery.k8s.io/v1', plural: 'endpointslices' },
  { kind: 'Node', apiVersion: 'v1', namespaced: false, prefix: '/api/v1', plural: 'nodes' },
  { kind: 'ServiceCIDR', apiVersion: 'networking.k8s.io/v1', namespaced: false, prefix: '/apis/networking.k8s.io/v1', plural: 'servicecidrs' },
];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KubeObject = { metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown }; [k: string]: any };

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  kind: ResourceKind;
  type: EventType;
  object: KubeObject;
}

interface Watcher {
  def: ResourceDef;
  namespace?: string;
  fieldName?: string;
  labels?: LabelReq[];
  res: http.ServerResponse;
  bookmarks: boolean;
  timer?: NodeJS.Timeout;
  bookmarkTimer?: NodeJS.Timeout;
}

export interface ApiServerOptions {
  /** How often a watch that asked for bookmarks gets one (the real server: about every minute). */
  bookmarkIntervalMs?: number;
  /** How many history events are kept for watches to resume from (the watch cache's capacity). */
  historyLimit?: number;
  port?: number;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Serve HTTPS with this key and certificate (PEM), as a real API server does. */
  tls?: { key: Buffer; cert: Buffer };
  /** Require `Authorization: Bearer <token>` (401 Unauthorized otherwise, as the real server answers). */
  token?: string;
  /** Kinds this server does not serve (404, as a Kubernetes before 1.33 answers for ServiceCIDRs). */
  without?: ResourceKind[];
  /** Kinds the client may not read (403 Forbidden, as RBAC answers). */
  forbidden?: ResourceKind[];
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  /** When it arrived (Date.now()). */
  at: number;
}

/** A fault every request meets until setFault(undefined). */
export type ApiFault =
  | { kind: 'hang' }
  | { kind: 'trickle-lists'; intervalMs: number }
  | { kind: 'close-watches' }
  | { kind: 'expire-watches' }
  | { kind: 'status'; code: 429 | 503; retryAfter: string };

export class ApiServerDouble {
  private rv = 1;
  private readonly objects = new Map<ResourceKind, Map<string, KubeObject>>(RESOURCES.map((r) => [r.kind, new Map()]));
  private history: HistoryEvent[] = [];
  /** Lowest resourceVersion a watch may resume from (exclusive): older ones get 410. */
  private compactedRV = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<import('node:net').Socket>();
  private server: http.Server | undefined;
  private uidCounter = 0;
  private listenPort = 0;
  private fault: ApiFault | undefined;
  /** Requests held by a 'hang' or 'trickle-lists' fault, and whether the client went away. */
  readonly held: Array<{ res: http.ServerResponse; clientGone: boolean }> = [];
  readonly requests: RequestRecord[] = [];
  /** Events posted (events.k8s.io/v1), as created. */
  readonly events: KubeObject[] = [];

  constructor(private readonly opts: ApiServerOptions = {}) {}

  get port(): number {
    return this.listenPort;
  }

  get url(): string {
    const host = this.opts.host ?? '127.0.0.1';
    return `${this.opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${this.listenPort}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Open watch streams, per kind. */
  openWatches(kind?: ResourceKind): number {
    return [...this.watchers].filter((w) => !kind || w.def.kind === kind).length;
  }

  async start(): Promise<void> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    this.server = this.opts.tls ? https.createServer({ key: this.opts.tls.key, cert: this.opts.tls.cert }, handler) : http.createServer(handler);
    this.server.keepAliveTimeout = 1000;
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.listenPort || this.opts.port || 0, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    this.listenPort = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const w of [...this.watchers]) this.endWatch(w);
    for (const h of this.held.splice(0)) h.res.destroy();
    for (const s of this.sockets) s.destroy();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
    this.server = undefined;
  }

  /** The server disappears: no listener, every connection reset. resume() brings it back on the same port. */
  async pause(): Promise<void> {
    await this.stop();
  }

  async resume(): Promise<void> {
    await this.start();
  }

  /** A kubeconfig (YAML) pointing at this server (plain HTTP on 127.0.0.1: TLS is not what it tests). */
  kubeconfig(): string {
    return [
      'apiVersion: v1', 'kind: Config', 'current-context: double',
      'clusters:', '- name: double', '  cluster:', `    server: ${this.url}`,
      'contexts:', '- name: double', '  context:', '    cluster: double', '    user: test',
      'users:', '- name: test', '  user:', '    token: double-token', '',
    ].join('\n');
  }

  // ---- data ------------------------------------------------------------------------------------------------

  /** Creates or replaces an object (kind from the object, or `kind`); returns the stored copy. */
  apply(obj: KubeObject, kind?: ResourceKind): KubeObject {
    const k = kind ?? (obj.kind as ResourceKind);
    const def = defOf(k);
    const key = keyOf(def, obj);
    const store = this.objects.get(k)!;
    const prev = store.get(key);
    const stored: KubeObject = JSON.parse(JSON.stringify(obj));
    delete stored.kind;
    delete stored.apiVersion;
    if (def.namespaced) stored.metadata.namespace = stored.metadata.namespace ?? 'default';
    stored.metadata.uid = prev?.metadata.uid ?? `uid-${++this.uidCounter}`;
    stored.metadata.resourceVersion = String(++this.rv);
    store.set(key, stored);
    this.emit({ rv: this.rv, kind: k, type: prev ? 'MODIFIED' : 'ADDED', object: stored });
    return stored;
  }

  /** Applies many objects, one resourceVersion each (bulk set-up). */
  applyMany(objs: KubeObject[]): void {
    for (const o of objs) this.apply(o);
  }

  remove(kind: ResourceKind, namespace: string | undefined, name: string): boolean {
    const def = defOf(kind);
    const key = def.namespaced ? `${namespace ?? 'default'}/${name}` : name;
    const store = this.objects.get(kind)!;
    const prev = store.get(key);
    if (!prev) return false;
    store.delete(key);
    // A delete event carries the object's last state at the deletion's resourceVersion.
    const gone: KubeObject = { ...prev, metadata: { ...prev.metadata, resourceVersion: String(++this.rv) } };
    this.emit({ rv: this.rv, kind, type: 'DELETED', object: gone });
    return true;
  }

  get(kind: ResourceKind, namespace: string | undefined, name: string): KubeObject | undefined {
    const def = defOf(kind);
    return this.objects.get(kind)!.get(def.namespaced ? `${namespace ?? 'default'}/${name}` : name);
  }

  // ---- faults ----------------------------------------------------------------------------------------------

  /** Cuts every open watch connection mid-stream (no final chunk): what a load balancer or a crash does. */
  dropWatches(): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      clearTimeout(w.timer);
      clearInterval(w.bookmarkTimer);
      w.res.socket?.destroy();
    }
  }

  /** Forgets history up to now: a watch resuming from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedRV = this.rv;
    this.history = [];
  }

  /** Every open watch receives ERROR 410 Expired and ends; history is compacted, so resuming fails too. */
  expireWatches(): void {
    this.compact();
    for (const w of [...this.watchers]) {
      this.writeEvent(w, { type: 'ERROR', object: expiredStatus(this.rv) });
      this.endWatch(w);
    }
  }

  setFault(f: ApiFault | undefined): void {
    this.fault = f;
  }

  /**
   * Writes a line of `bytes` without a newline to every open watch, in 64 KiB chunks as the client drains them;
   * resolves with how many bytes each watch took before its client hung up (or all of them).
   */
  sendLongLine(bytes: number): Promise<number[]> {
    const chunk = '{"type":"ADDED","object":{"metadata":{"name":"' + 'x'.repeat(65536);
    return Promise.all([...this.watchers].map((w) => new Promise<number>((resolve) => {
      let sent = 0;
      const done = () => resolve(sent);
      w.res.once('close', done);
      const pump = () => {
        while (sent < bytes && !w.res.destroyed) {
          sent += chunk.length;
          if (!w.res.write(chunk)) return void w.res.once('drain', pump);
        }
        w.res.off('close', done);
        done();
      };
      pump();
    })));
  }

  // ---- HTTP ------------------------------------------------------------------------------------------------

  /** POST of an events.k8s.io/v1 Event: kept (events), answered 201 with it, as the real server does. */
  private createEvent(req: http.IncomingMessage, res: http.ServerResponse, namespace: string): void {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      let ev: KubeObject;
      try {
        ev = JSON.parse(body) as KubeObject;
      } catch {
        return this.status(res, 400, 'BadRequest', 'the body is not JSON');
      }
      if (ev.kind !== 'Event' || ev.apiVersion !== 'events.k8s.io/v1' || ev.metadata?.namespace !== namespace || !ev.metadata?.name || !ev.eventTime || !ev.reportingController) {
        return this.status(res, 422, 'Invalid', `Event is invalid: ${body.slice(0, 200)}`);
      }
      ev.metadata.resourceVersion = String(++this.rv);
      this.events.push(ev);
      this.json(res, 201, ev);
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://double');
    const query = Object.fromEntries(url.searchParams);
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, query, at: Date.now() });
    if (this.opts.token !== undefined && req.headers.authorization !== `Bearer ${this.opts.token}`) return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    if (this.injectFault(res, query)) return;
    const eventsPath = /^\/apis\/events\.k8s\.io\/v1\/namespaces\/([^/]+)\/events$/.exec(url.pathname);
    if (req.method === 'POST' && eventsPath) return this.createEvent(req, res, eventsPath[1]);
    const route = this.route(url.pathname);
    if (req.method !== 'GET' || !route) return this.status(res, 404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`);
    const { def, namespace, name } = route;
    if (this.opts.without?.includes(def.kind)) return this.status(res, 404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`);
    if (this.opts.forbidden?.includes(def.kind)) return this.status(res, 403, 'Forbidden', `${def.plural}.${def.apiVersion.split('/')[0]} is forbidden: User "system:serviceaccount:kube-system:svcplane" cannot list resource "${def.plural}"`);
    if (name !== undefined) {
      const obj = this.objects.get(def.kind)!.get(def.namespaced ? `${namespace}/${name}` : name);
      if (!obj) return this.status(res, 404, 'NotFound', `${def.plural} "${name}" not found`);
      return this.json(res, 200, withKind(def, obj));
    }
    let fieldName: string | undefined;
    if (query.fieldSelector) {
      const m = /^metadata\.name=(.+)$/.exec(query.fieldSelector);
      if (!m) return this.status(res, 400, 'BadRequest', `unsupported fieldSelector ${query.fieldSelector} (the double knows metadata.name=)`);
      fieldName = m[1];
    }
    const labels = parseLabelSelector(query.labelSelector);
    if (labels === null) return this.status(res, 400, 'BadRequest', `unsupported labelSelector ${query.labelSelector} (the double knows k=v, k!=v, k, !k)`);
    const filter = { namespace, fieldName, labels };
    if (query.watch === 'true' || query.watch === '1') return this.watch(res, def, filter, query);
    this.list(res, def, filter, query);
  }

  /** Answers the request as the current fault would; false when there is none (or it does not apply). */
  private injectFault(res: http.ServerResponse, query: Record<string, string>): boolean {
    const f = this.fault;
    const watch = query.watch === 'true' || query.watch === '1';
    if (!f) return false;
    if (f.kind === 'hang') {
      // Headers never come: the request is held until the client gives up.
      const h = { res, clientGone: false };
      this.held.push(h);
      res.on('close', () => (h.clientGone = true));
      return true;
    }
    if (f.kind === 'status') {
      const text = JSON.stringify(statusObject(f.code, f.code === 429 ? 'TooManyRequests' : 'ServiceUnavailable', 'injected'));
      res.writeHead(f.code, { 'Content-Type': 'application/json', 'Retry-After': f.retryAfter, 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return true;
    }
    if (f.kind === 'close-watches' && watch) {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      res.end();
      return true;
    }
    if (f.kind === 'expire-watches' && watch) {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      res.end(JSON.stringify({ type: 'ERROR', object: expiredStatus(Number(query.resourceVersion) || 0) }) + '\n');
      return true;
    }
    if (f.kind === 'trickle-lists' && !watch) {
      // Headers at once, then the body a byte at a time: a list that would take hours.
      const h = { res, clientGone: false };
      this.held.push(h);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const body = JSON.stringify({ kind: 'List', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items: [] });
      let i = 0;
      const t = setInterval(() => {
        if (res.destroyed) return clearInterval(t);
        res.write(body[i++ % body.length]);
      }, f.intervalMs);
      res.on('close', () => {
        h.clientGone = true;
        clearInterval(t);
      });
      return true;
    }
    return false;
  }

  private route(pathname: string): { def: ResourceDef; namespace?: string; name?: string } | undefined {
    for (const def of RESOURCES) {
      if (!pathname.startsWith(def.prefix + '/')) continue;
      const rest = pathname.slice(def.prefix.length + 1).split('/');
      if (rest[0] === def.plural && rest.length <= 2) return { def, name: rest[1] };
      if (def.namespaced && rest[0] === 'namespaces' && rest[2] === def.plural && rest.length <= 4) return { def, namespace: rest[1], name: rest[3] };
    }
    return undefined;
  }

  private list(res: http.ServerResponse, def: ResourceDef, filter: Filter, query: Record<string, string>): void {
    const limit = query.limit ? Number(query.limit) : 0;
    let start = 0;
    let listRV = this.rv;
    if (query.continue) {
      const tok = decodeContinue(query.continue);
      if (!tok) return this.status(res, 400, 'BadRequest', 'invalid continue token');
      // The real server serves continuations from etcd at the first page's revision until it is compacted.
      if (tok.rv < this.compactedRV) return this.status(res, 410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      start = tok.start;
      listRV = tok.rv;
    }
    // A consistent snapshot at listRV: objects as they are now, unless changed since (then replay backwards
    // is beyond a double; continuation across writes is rare in tests, so the double refuses it honestly).
    const items = [...this.objects.get(def.kind)!.values()].filter((o) => matches(def, o, filter)).sort((a, b) => keyOf(def, a).localeCompare(keyOf(def, b)));
    if (query.continue && this.rv !== listRV) return this.status(res, 410, 'Expired', 'the double cannot serve a continuation after writes; start a new list');
    const page = limit > 0 ? items.slice(start, start + limit) : items.slice(start);
    const next = start + page.length;
    const metadata: Record<string, unknown> = { resourceVersion: String(listRV) };
    if (limit > 0 && next < items.length) {
      metadata.continue = encodeContinue({ rv: listRV, start: next });
      metadata.remainingItemCount = items.length - next;
    }
    this.json(res, 200, { kind: `${def.kind}List`, apiVersion: def.apiVersion, metadata, items: page });
  }

  private watch(res: http.ServerResponse, def: ResourceDef, filter: Filter, query: Record<string, string>): void {
    const rvParam = query.resourceVersion;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
    // The API server flushes a watch's headers at once (its WatchServer does), before any event.
    res.flushHeaders();
    const w: Watcher = { def, namespace: filter.namespace, fieldName: filter.fieldName, labels: filter.labels, res, bookmarks: query.allowWatchBookmarks === 'true' };
    res.on('close', () => this.forget(w));
    if (rvParam === undefined || rvParam === '' || rvParam === '0') {
      for (const o of this.objects.get(def.kind)!.values()) if (matches(def, o, filter)) this.writeEvent(w, { type: 'ADDED', object: withKind(def, o) });
    } else {
      const from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0) {
        this.writeEvent(w, { type: 'ERROR', object: statusObject(400, 'BadRequest', `invalid resource version "${rvParam}"`) });
        return void res.end();
      }
      if (from < this.compactedRV) {
        this.writeEvent(w, { type: 'ERROR', object: expiredStatus(from) });
        return void res.end();
      }
      for (const e of this.history) if (e.rv > from && e.kind === def.kind && matches(def, e.object, filter)) this.writeEvent(w, { type: e.type, object: withKind(def, e.object) });
    }
    this.watchers.add(w);
    const timeout = Number(query.timeoutSeconds ?? 0);
    if (timeout > 0) w.timer = setTimeout(() => this.endWatch(w), timeout * 1000);
    if (w.bookmarks) {
      w.bookmarkTimer = setInterval(() => this.writeEvent(w, { type: 'BOOKMARK', object: { kind: def.kind, apiVersion: def.apiVersion, metadata: { resourceVersion: String(this.rv) } } }), this.opts.bookmarkIntervalMs ?? 60_000);
    }
  }

  private emit(e: HistoryEvent): void {
    this.history.push(e);
    const limit = this.opts.historyLimit ?? 100_000;
    if (this.history.length > limit) {
      const dropped = this.history.splice(0, this.history.length - limit);
      this.compactedRV = dropped[dropped.length - 1].rv;
    }
    for (const w of this.watchers) {
      if (w.def.kind !== e.kind || !matches(w.def, e.object, w)) continue;
      this.writeEvent(w, { type: e.type, object: withKind(w.def, e.object) });
    }
  }

  private writeEvent(w: Watcher, ev: { type: string; object: unknown }): void {
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(JSON.stringify(ev) + '\n');
  }

  private endWatch(w: Watcher): void {
    this.forget(w);
    if (!w.res.writableEnded) w.res.end();
  }

  private forget(w: Watcher): void {
    this.watchers.delete(w);
    clearTimeout(w.timer);
    clearInterval(w.bookmarkTimer);
  }

  private json(res: http.ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    this.json(res, code, statusObject(code, reason, message));
  }
}

interface Filter {
  namespace?: string;
  fieldName?: string;
  labels?: LabelReq[];
}

function defOf(kind: ResourceKind): ResourceDef {
  const d = RESOURCES.find((r) => r.kind === kind);
  if (!d) throw new Error(`the API double does not serve ${kind}`);
  return d;
}

function keyOf(def: ResourceDef, o: KubeObject): string {
  return def.namespaced ? `${o.metadata.namespace ?? 'default'}/${o.metadata.name}` : o.metadata.name;
}

function matches(def: ResourceDef, o: KubeObject, f: Filter): boolean {
  if (def.namespaced && f.namespace !== undefined && (o.metadata.namespace ?? 'default') !== f.namespace) return false;
  if (f.fieldName !== undefined && o.metadata.name !== f.fieldName) return false;
  if (f.labels && !labelsMatch((o.metadata.labels ?? {}) as Record<string, string>, f.labels)) return false;
  return true;
}

function withKind(def: ResourceDef, o: KubeObject): KubeObject {
  return { kind: def.kind, apiVersion: def.apiVersion, ...o };
}

/** Equality and existence requirements (k=v, k==v, k!=v, k, !k): what proxies use; set-based ones are refused. */
type LabelReq = { key: string; op: 'eq' | 'ne' | 'exists' | 'absent'; value?: string };

function parseLabelSelector(sel: string | undefined): LabelReq[] | undefined | null {
  if (!sel) return undefined;
  const reqs: LabelReq[] = [];
  for (const raw of sel.split(',')) {
    const part = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s*!=\s*([\w./-]*)$/.exec(part))) reqs.push({ key: m[1], op: 'ne', value: m[2] });
    else if ((m = /^([\w./-]+)\s*==?\s*([\w./-]*)$/.exec(part))) reqs.push({ key: m[1], op: 'eq', value: m[2] });
    else if ((m = /^!([\w./-]+)$/.exec(part))) reqs.push({ key: m[1], op: 'absent' });
    else if ((m = /^([\w./-]+)$/.exec(part))) reqs.push({ key: m[1], op: 'exists' });
    else return null;
  }
  return reqs;
}

function labelsMatch(have: Record<string, string>, reqs: LabelReq[]): boolean {
  return reqs.every((r) => {
    const v = Object.prototype.hasOwnProperty.call(have, r.key) ? have[r.key] : undefined;
    if (r.op === 'exists') return v !== undefined;
    if (r.op === 'absent') return v === undefined;
    if (r.op === 'eq') return v === r.value;
    return v !== r.value;
  });
}

function statusObject(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** What the watch cache sends for a resourceVersion it no longer holds. */
function expiredStatus(rv: number) {
  return statusObject(410, 'Expired', `too old resource version: ${rv}`);
}

function encodeContinue(t: { rv: number; start: number }): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: t.rv, start: t.start })).toString('base64');
}

function decodeContinue(s: string): { rv: number; start: number } | undefined {
  try {
    const t = JSON.parse(Buffer.from(s, 'base64').toString('utf8'));
    return Number.isInteger(t.rv) && Number.isInteger(t.start) ? { rv: t.rv, start: t.start } : undefined;
  } catch {
    return undefined;
  }
}
