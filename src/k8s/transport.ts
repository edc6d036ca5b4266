// HTTP(S) to the API server with the kubeconfig's credentials. @kubernetes/client-node provides KubeConfig (files,
// KUBECONFIG merging, in-cluster service-account config, exec/OIDC/token-file auth) and applies it to Node's own
// https options (applyToHTTPSOptions, which carries the cluster CA and client certificates; its fetch variant
// does not with Node's global fetch). The list/watch protocol itself is one GET each, handled in reflector.ts.
import * as http from 'node:http';
import * as https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';

export interface ApiTransport {
  /** The API server's base URL (for logs). */
  readonly server: string;
  getJSON(path: string, signal: AbortSignal): Promise<unknown>;
  /** Opens a streaming GET; resolves with the 200 response, rejects with ApiError otherwise. */
  stream(path: string, signal: AbortSignal): Promise<http.IncomingMessage>;
}

export class ApiError extends Error {
  constructor(message: string, readonly statusCode: number, readonly reason?: string) {
    super(message);
  }
}

/** Loads credentials: an explicit kubeconfig file, else KUBECONFIG, ~/.kube/config, then in-cluster config. */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error(file ? `kubeconfig ${file}: no current cluster` : 'no kubeconfig found (KUBECONFIG, ~/.kube/config) and not running in a cluster');
  return kc;
}

export class KubeConfigTransport implements ApiTransport {
  readonly server: string;

  constructor(private readonly kc: KubeConfig) {
    this.server = kc.getCurrentCluster()!.server.replace(/\/+$/, '');
  }

  private async request(path: string, signal: AbortSignal): Promise<http.IncomingMessage> {
    const opts: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    const url = new URL(this.server + path);
    const mod = url.protocol === 'http:' ? http : https;
    const headers = { ...(opts.headers as Record<string, string> | undefined), Accept: 'application/json' };
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
