// The agent's two HTTP servers, as kube-proxy has them: health (/healthz, /livez) on healthzBindAddress, and
// metrics (/metrics, plus /healthz "ok" and /proxyMode) on metricsBindAddress. An empty address disables a server.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { splitHostPort } from '../config/kubeProxyConfig';
import type { ProxyHealth } from './health';
import type { ProxyMetrics } from './metrics';

export interface RunningServer {
  /** The bound address (host:port), useful when the configured port was 0. */
  address: string;
  close(): Promise<void>;
}

/** Listens on addr; `what` names the server and its flag in the error (the agent exits 1 with it). */
async function listen(what: string, addr: string, handler: http.RequestListener): Promise<RunningServer> {
  const { host, port } = splitHostPort(addr);
  const server = http.createServer(handler);
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`${what}: cannot listen on ${addr}: ${(e as Error).message}`)));
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
    close: () => new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

function send(res: http.ServerResponse, code: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(code, { 'Content-Type': contentType, 'X-Content-Type-Options': 'nosniff', ...extra });
  res.end(body);
}

export function startHealthServer(addr: string, health: ProxyHealth, metrics: ProxyMetrics): Promise<RunningServer> {
  return listen('health server (healthzBindAddress)', addr, (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== '/healthz' && path !== '/livez') return send(res, 404, 'text/plain; charset=utf-8', '404 page not found\n');
    const r = path === '/healthz' ? health.healthz() : health.livez();
    (path === '/healthz' ? metrics.healthzTotal : metrics.livezTotal).inc({ code: String(r.code) });
    send(res, r.code, 'application/json', r.body);
  });
}

export function startMetricsServer(addr: string, metrics: ProxyMetrics, mode: string): Promise<RunningServer> {
  return listen('metrics server (metricsBindAddress)', addr, (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/metrics') {
      metrics.render().then(
        (m) => send(res, 200, m.contentType, m.body),
        (e: Error) => send(res, 500, 'text/plain; charset=utf-8', `${e.message}\n`),
      );
      return;
    }
    if (path === '/healthz') return send(res, 200, 'text/plain; charset=utf-8', 'ok');
    if (path === '/proxyMode') return send(res, 200, 'text/plain; charset=utf-8', mode);
    send(res, 404, 'text/plain; charset=utf-8', '404 page not found\n');
  });
}
