// HTTP(S) to the API server. The list/watch protocol is one GET each (reflector.ts); this file only opens them
// with the right TLS and credentials: svcplane's own kubeconfig reader (kubeconfig.ts) for tokens, certificates and
// in-cluster config, and @kubernetes/client-node's KubeConfig for exec plugins and auth providers, loaded only
// when the kubeconfig needs it (it costs ~67 MB of RSS to load).
import * as http from 'node:http';
import * as https from 'node:https';
import { KubeConfigError, loadClusterAccess, type ClusterAccess } from './kubeconfig';

export interface ApiTransport {
  /** The API server's base URL (for logs). */
  readonly server: string;
  /** Where the credentials came from (for logs). */
  readonly source: string;
  getJSON(path: string, signal: AbortSignal): Promise<unknown>;
  /** Opens a streaming GET; resolves with the 200 response, rejects with ApiError otherwise. */
  stream(path: string, signal: AbortSignal): Promise<http.IncomingMessage>;
}

export class ApiError extends Error {
  constructor(message: string, readonly statusCode: number, readonly reason?: string) {
    super(message);
  }
}

/** Request options (TLS, Authorization) for one request. */
type OptionsSource = () => Promise<https.RequestOptions>;

class HttpTransport implements ApiTransport {
  constructor(readonly server: string, readonly source: string, private readonly options: OptionsSource) {}

  private async request(path: string, signal: AbortSignal): Promise<http.IncomingMessage> {
    const opts = await this.options();
    const url = new URL(this.server + path);
    const mod = url.protocol === 'http:' ? http : https;
    const headers = { ...(opts.headers as Record<string, string> | undefined), Accept: 'application/json', 'User-Agent': 'svcplane' };
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...opts, method: 'GET', headers, signal }, resolve);
      req.on('error', reject);
      req.end();
    });
  }

  async getJSON(path: string, signal: AbortSignal): Promise<unknown> {
    const res = await this.request(path, signal);
    const body = await readAll(res);
    if (res.statusCode !== 200) throw errorOf(path, res.statusCode ?? 0, body);
    return JSON.parse(body);
  }

  async stream(path: string, signal: AbortSignal): Promise<http.IncomingMessage> {
    const res = await this.request(path, signal);
    if (res.statusCode === 200) return res;
    throw errorOf(path, res.statusCode ?? 0, await readAll(res).catch(() => ''));
  }
}

/** The transport for an explicit kubeconfig file, or the default locations / in-cluster config. */
export async function openTransport(kubeconfig?: string): Promise<ApiTransport> {
  const access = loadClusterAccess(kubeconfig);
  if ('needsClientNode' in access) return clientNodeTransport(access.file, access.reason);
  return accessTransport(access);
}

export function accessTransport(a: ClusterAccess): ApiTransport {
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
  });
}

async function clientNodeTransport(file: string | undefined, reason: string): Promise<ApiTransport> {
  // Loaded here only: see the file comment. (An ES module, loaded through Node >= 20.19's require(esm).)
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeConfigError('kubeconfig: no current cluster');
  return new HttpTransport(cluster.server.replace(/\/+$/, ''), `kubeconfig via client-node (${reason})`, async () => {
    const opts: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    return opts;
  });
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let b = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (b += c));
    res.on('end', () => resolve(b));
    res.on('error', reject);
  });
}

/** An HTTP error with the API's Status reason and message when the body is one. */
function errorOf(path: string, code: number, body: string): ApiError {
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
  return new ApiError(`GET ${path}: HTTP ${code}${reason ? ` ${reason}` : ''}: ${message}`, code, reason);
}
