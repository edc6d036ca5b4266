// healthCheckNodePort servers (kube-proxy's pkg/proxy/healthcheck/service_health.go): for every Service with a
// healthCheckNodePort (LoadBalancer, externalTrafficPolicy Local), an HTTP server on that port telling the cloud load
// balancer whether this node has endpoints for it: 200 when it has ready local endpoints and the proxy is healthy,
// 503 otherwise, on every path, with kube-proxy's JSON body and headers (X-Load-Balancing-Endpoint-Weight: the
// count). Listeners follow the Service ports: opened when a Service gets a health check port, closed when it goes.
import * as http from 'node:http';
import type { Logger } from '../log';
import type { ServiceKey, ServicePort, ServicePortKey } from '../model/types';
import { serviceHealthBody, type ProxyHealth } from './health';

interface Entry {
  port: number;
  namespace: string;
  name: string;
  count: number;
  server?: http.Server;
  /** Set when the port could not be opened (reported once). */
  failed?: string;
}

export class ServiceHealthServers {
  /** Per Service, the health check port and ready local endpoint addresses of each of its ports. */
  private readonly ports = new Map<ServiceKey, Map<ServicePortKey, { port: number; ips: string[] }>>();
  private readonly entries = new Map<ServiceKey, Entry>();

  /**
   * nodeName: this node (local endpoints are those whose nodeName it is). host: where to listen ("::" takes IPv4
   * too, falling back to 0.0.0.0 without IPv6; kube-proxy binds every address unless nodePortAddresses says).
   */
  constructor(private readonly health: ProxyHealth, private readonly nodeName: string, private readonly log: Logger, private readonly host = '::') {}

  /** Replaces everything with these Service ports (a full sync): Services not among them lose their server. */
  async replaceAll(all: Map<ServicePortKey, ServicePort>): Promise<void> {
    const changes = new Map<ServicePortKey, ServicePort | undefined>(all);
    for (const m of this.ports.values()) for (const key of m.keys()) if (!all.has(key)) changes.set(key, undefined);
    await this.update(changes);
  }

  /** Applies changed Service ports (undefined: gone). Only the Services they belong to are looked at. */
  async update(changes: Map<ServicePortKey, ServicePort | undefined>): Promise<void> {
    const touched = new Set<ServiceKey>();
    for (const [key, sp] of changes) {
      // "ns/name:port" -> "ns/name" (a port name has no ':').
      const svc = sp ? `${sp.namespace}/${sp.name}` : key.slice(0, key.lastIndexOf(':'));
      if (!sp && !this.ports.has(svc)) continue;
      touched.add(svc);
      let m = this.ports.get(svc);
      if (!sp || sp.healthCheckNodePort <= 0) {
        m?.delete(key);
        if (m && m.size === 0) this.ports.delete(svc);
        continue;
      }
      if (!m) this.ports.set(svc, (m = new Map()));
      // kube-proxy counts this node's ready endpoints (terminating ones make the check fail: the load balancer should
      // stop sending while they drain), by address, across the Service's ports.
      m.set(key, { port: sp.healthCheckNodePort, ips: sp.allEndpoints.filter((e) => e.ready && e.nodeName === this.nodeName).map((e) => e.address) });
    }
    for (const svc of touched) await this.reconcile(svc);
  }

  private async reconcile(svc: ServiceKey): Promise<void> {
    const m = this.ports.get(svc);
    const have = this.entries.get(svc);
    if (!m) {
      if (have) {
        this.entries.delete(svc);
        await closeServer(have.server);
      }
      return;
    }
    const [first] = m.values();
    const ips = new Set<string>();
    for (const p of m.values()) for (const ip of p.ips) ips.add(ip);
    const slash = svc.indexOf('/');
    if (have && have.port === first.port) {
      have.count = ips.size;
      return;
    }
    if (have) await closeServer(have.server);
    const entry: Entry = { port: first.port, namespace: svc.slice(0, slash), name: svc.slice(slash + 1), count: ips.size };
    this.entries.set(svc, entry);
    try {
      entry.server = await this.listen(entry);
    } catch (e) {
      entry.failed = (e as Error).message;
      this.log.warn('cannot serve healthCheckNodePort (kube-proxy: FailedToStartServiceHealthcheck)', { service: svc, port: entry.port, error: entry.failed });
    }
  }

  private listen(entry: Entry): Promise<http.Server> {
    const server = http.createServer((_req, res) => {
      const healthy = this.health.healthy;
      const body = serviceHealthBody(entry.namespace, entry.name, entry.count, healthy);
      // Content-Length as Go's server sets it for a small body: load balancer probes need not speak chunked.
      res.writeHead(entry.count > 0 && healthy ? 200 : 503, {
        'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff', 'X-Load-Balancing-Endpoint-Weight': String(entry.count),
        'Content-Length': String(Buffer.byteLength(body)),
      });
      res.end(body);
    });
    server.keepAliveTimeout = 5000;
    return new Promise((resolve, reject) => {
      const host = this.host;
      const onError = (e: NodeJS.ErrnoException) => {
        // No IPv6 in this namespace: "::" cannot be bound; IPv4 alone will do.
        if (host === '::' && (e.code === 'EAFNOSUPPORT' || e.code === 'EADDRNOTAVAIL')) {
          server.once('error', (e2: Error) => reject(new Error(`listen 0.0.0.0:${entry.port}: ${e2.message}`)));
          server.listen({ port: entry.port, host: '0.0.0.0' }, () => resolve(server));
          return;
        }
        reject(new Error(`listen ${host}:${entry.port}: ${e.message}`));
      };
      server.once('error', onError);
      server.listen({ port: entry.port, host, ipv6Only: false }, () => {
        server.off('error', onError);
        resolve(server);
      });
    });
  }

  /** Local endpoint counts by Service (for tests and status). */
  counts(): Map<ServiceKey, { port: number; localEndpoints: number; serving: boolean }> {
    return new Map([...this.entries].map(([k, e]) => [k, { port: e.port, localEndpoints: e.count, serving: !!e.server }]));
  }

  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => closeServer(e.server)));
  }
}

function closeServer(s: http.Server | undefined): Promise<void> {
  if (!s) return Promise.resolve();
  return new Promise((r) => {
    s.close(() => r());
    s.closeAllConnections();
  });
}
