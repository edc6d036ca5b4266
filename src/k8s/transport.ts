// HTTP(S) to the API server. The list/watch protocol is one GET each (reflector.ts); this file only opens them
// with the right TLS and credentials: svcplane's own kubeconfig reader (kubeconfig.ts) for tokens, certificates and
// in-cluster config, and @kubernetes/client-node's KubeConfig for exec plugins and auth providers, loaded only
// when the kubeconfig needs it (it costs ~67 MB of RSS to load).
import * as http from 'node:http';
import * as https from 'node:https';
import { KubeConfigError, clusterIPHint, loadClusterAccess, withMaster, type ClusterAccess } from './kubeconfig';

export interface ApiTransport {
  /** The API server's base URL (for logs). */
  readonly server: string;
  /** Where the credentials came from (for logs). */
  readonly source: string;
  /** Said with a connection failure: why this address may be unreachable (kubeconfig.ts clusterIPHint). */
  readonly hint?: string;
  /** Called once per request when its response headers arrive (or it fails): client-go's rest_client metrics. */
  onRequest?: (r: RequestRecord) => void;
  getJSON(path: string, signal: AbortSignal): Promise<unknown>;
  /** Opens a streaming GET; resolves with the 200 response, rejects with ApiError otherwise. */
  stream(path: string, signal: AbortSignal): Promise<http.IncomingMessage>;
  /** One POST of a JSON object (create); resolves with the created object, rejects with ApiError otherwise. */
  postJSON(path: string, body: unknown, signal: AbortSignal): Promise<unknown>;
}

/** One request as client-go's REST metrics see it (rest/request.go). */
export interface RequestRecord {
  verb: string;
  /** host:port of the server. */
  host: string;
  /** The HTTP status, or "<error>" when no response came. */
  code: string;
  /** Until the response headers (a watch's stream is not counted). */
  seconds: number;
}

export class ApiError extends Error {
  constructor(message: string, readonly statusCode: number, readonly reason?: string, readonly retryAfterMs?: number) {
    super(message);
  }
}

/**
 * Bounds on every request, so no server (hung, overloaded, or a proxy in between) can leave the agent waiting for
 * good: the TCP/TLS connection, the response headers, and a list page's whole body. A watch's body is bounded by
 * the reflector's inactivity timeout instead (it is meant to last minutes). client-go leaves these to the caller;
 * kube-proxy gets them from its informers' request contexts. The numbers are far above what a healthy API server
 * needs (a 500-object page of EndpointSlices is well under a second) and far below "blind for good".
 */
export interface RequestBounds {
  connectMs: number;
  headersMs: number;
  listBodyMs: number;
}

export const DEFAULT_REQUEST_BOUNDS: RequestBounds = { connectMs: 10_000, headersMs: 30_000, listBodyMs: 60_000 };

/** A request that overran one of its bounds (RequestBounds). */
export class ApiTimeoutError extends Error {}

/** Request options (TLS, Authorization) for one request. */
type OptionsSource = () => Promise<https.RequestOptions>;

class HttpTransport implements ApiTransport {
  readonly hint: string | undefined;
  onRequest?: (r: RequestRecord) => void;

  constructor(readonly server: string, readonly source: string, private readonly options: OptionsSource, private readonly bounds: RequestBounds, env: NodeJS.ProcessEnv = process.env) {
    this.hint = clusterIPHint(server, env);
  }

  /** One request (GET, or POST with a JSON body), resolved with its response once the headers are in; connection and headers bounded. */
  private async request(path: string, signal: AbortSignal, body?: unknown): Promise<http.IncomingMessage> {
    const opts = await this.options();
    const url = new URL(this.server + path);
    const mod = url.protocol === 'http:' ? http : https;
    const method = body === undefined ? 'GET' : 'POST';
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { ...(opts.headers as Record<string, string> | undefined), Accept: 'application/json', 'User-Agent': 'svcplane' };
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    const { connectMs, headersMs } = this.bounds;
    const started = process.hrtime.bigint();
    const record = (code: string) => this.onRequest?.({ verb: method, host: url.host, code, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...opts, method, headers, signal }, (res) => {
        clearTimeout(headersTimer);
        record(String(res.statusCode ?? '<error>'));
        resolve(res);
      });
      const headersTimer = setTimeout(() => req.destroy(new ApiTimeoutError(`${method} ${path}: no response headers from ${this.server} in ${headersMs / 1000} s`)), headersMs);
      req.on('socket', (sock) => {
        // A reused keep-alive socket is already connected; a new one gets its own, shorter bound.
        if (!sock.connecting) return;
        const connectTimer = setTimeout(() => req.destroy(new ApiTimeoutError(`${method} ${path}: could not connect to ${this.server} in ${connectMs / 1000} s`)), connectMs);
        sock.once(url.protocol === 'http:' ? 'connect' : 'secureConnect', () => clearTimeout(connectTimer));
        sock.once('close', () => clearTimeout(connectTimer));
      });
      req.on('error', (e) => {
        clearTimeout(headersTimer);
        // An abort is the agent stopping, not a failed request.
        if (!signal.aborted) record('<error>');
        reject(e);
      });
      req.end(payload);
    });
  }

  async postJSON(path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    const res = await this.request(path, signal, body);
    const text = await readAll(res, this.bounds.listBodyMs, path);
    if (res.statusCode !== 201 && res.statusCode !== 200) throw errorOf(path, res, text);
    return JSON.parse(text);
  }

  async getJSON(path: string, signal: AbortSignal): Promise<unknown> {
    const res = await this.request(path, signal);
    const body = await readAll(res, this.bounds.listBodyMs, path);
    if (res.statusCode !== 200) throw errorOf(path, res, body);
    return JSON.parse(body);
  }

  async stream(path: string, signal: AbortSignal): Promise<http.IncomingMessage> {
    const res = await this.request(path, signal);
    if (res.statusCode === 200) return res;
    throw errorOf(path, res, await readAll(res, this.bounds.listBodyMs, path).catch(() => ''));
  }
}

/**
 * The transport for an explicit kubeconfig file, or the default locations / in-cluster config; `master` (--master)
 * replaces the server address of whichever it is.
 */
export async function openTransport(kubeconfig?: string, bounds: RequestBounds = DEFAULT_REQUEST_BOUNDS, master?: string): Promise<ApiTransport> {
  const load = () => loadClusterAccess(kubeconfig);
  const access = master ? withMaster(master, load) : load();
  if ('needsClientNode' in access) return clientNodeTransport(access.file, access.reason, bounds, access.server);
  return accessTransport(access, bounds);
}

export function accessTransport(a: ClusterAccess, bounds: RequestBounds = DEFAULT_REQUEST_BOUNDS): ApiTransport {
  const secure = a.server.startsWith('https:');
  // One keep-alive agent: list pages and re-watches reuse connections.
  const agent = secure
    ? new https.Agent({ keepAlive: true, ca: a.ca, cert: a.cert, key: a.key, rejectUnauthorized: !a.insecureSkipTLSVerify, servername: a.tlsServerName })
    : new http.Agent({ keepAlive: true });
  if (!secure && !a.insecureSkipTLSVerify && !/^http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(a.server + '/')) {
    // Credentials in clear text to a remote host: refuse, as client-go's transport does for bearer tokens.
    throw new KubeConfigError(`${a.source}: server ${a.server} is plain http to a remote host; use https (or set insecure-skip-tls-verify for a test cluster)`);
  }
  return new HttpTransport(a.server, a.source, async () => {
    const headers: Record<string, string> = {};
    const token = a.token?.();
    if (token) headers.Authorization = `Bearer ${token}`;
    else if (a.basic) headers.Authorization = `Basic ${Buffer.from(`${a.basic.username}:${a.basic.password}`).toString('base64')}`;
    return { agent, headers };
  }, bounds);
}

async function clientNodeTransport(file: string | undefined, reason: string, bounds: RequestBounds, master?: string): Promise<ApiTransport> {
  // Loaded here only: see the file comment. (An ES module, loaded through Node >= 20.19's require(esm).)
  // An optional dependency (57 MB of the 82 MB of node_modules): the image leaves it out unless built with
  // WITH_CLIENT_NODE=1, so its absence is said plainly, with the way to get it.
  const { KubeConfig } = await import('@kubernetes/client-node').catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ERR_MODULE_NOT_FOUND' && e.code !== 'MODULE_NOT_FOUND') throw e;
    throw new KubeConfigError(`this kubeconfig needs @kubernetes/client-node (${reason}), which is not installed: ` +
      'npm install @kubernetes/client-node, or build the image with --build-arg WITH_CLIENT_NODE=1; or use a kubeconfig with a token, ' +
      'token file or client certificate (the DaemonSet\'s service account needs none of this)');
  });
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeConfigError('kubeconfig: no current cluster');
  return new HttpTransport(master ?? cluster.server.replace(/\/+$/, ''), `kubeconfig via client-node (${reason})${master ? ', server from --master' : ''}`, async () => {
    const opts: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    return opts;
  }, bounds);
}

/** The whole body, within `ms` of the headers (a body trickling at 1 byte/s fails instead of taking days). */
function readAll(res: http.IncomingMessage, ms: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let b = '';
    const timer = setTimeout(() => res.destroy(new ApiTimeoutError(`GET ${path}: response body not complete after ${ms / 1000} s (${b.length} bytes received)`)), ms);
    res.setEncoding('utf8');
    res.on('data', (c: string) => (b += c));
    res.on('end', () => {
      clearTimeout(timer);
      resolve(b);
    });
    res.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    res.on('close', () => {
      clearTimeout(timer);
      if (!res.complete) reject(new Error(`GET ${path}: connection closed before the response body ended`));
    });
  });
}

/**
 * Retry-After (seconds, or an HTTP date), as the API server sends it with 429 and 503. client-go waits this long
 * before retrying; so does svcplane, capped at 10 min (a bogus header must not park the agent for a day).
 */
export function retryAfterMs(header: string | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const secs = /^\s*\d+\s*$/.test(header) ? Number(header) * 1000 : Date.parse(header) - now;
  if (!Number.isFinite(secs)) return undefined;
  return Math.min(Math.max(secs, 0), 600_000);
}

/** An HTTP error with the API's Status reason and message when the body is one, and its Retry-After. */
function errorOf(path: string, res: http.IncomingMessage, body: string): ApiError {
  const code = res.statusCode ?? 0;
  const retryAfter = retryAfterMs(res.headers['retry-after']);
  let reason: string | undefined;
  let message = body.slice(0, 200);
  try {
    const s = JSON.parse(body) as { kind?: string; reason?: string; message?: string };
    if (s.kind === 'Status') {
      reason = s.reason;
      message = s.message ?? message;
    }
  } catch {
    /* not JSON */
  }
  const after = retryAfter !== undefined ? ` (Retry-After ${Math.round(retryAfter / 1000)} s)` : '';
  return new ApiError(`GET ${path}: HTTP ${code}${reason ? ` ${reason}` : ''}: ${message}${after}`, code, reason, retryAfter);
}
