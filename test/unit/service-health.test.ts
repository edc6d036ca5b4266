// healthCheckNodePort servers (src/server/serviceHealth.ts) over real HTTP on 127.0.0.1: kube-proxy's status codes,
// headers and body; the count follows the Service's ready local endpoints; the proxy's health counts too.
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log';
import type { Endpoint, ServicePort } from '../../src/model/types';
import { ProxyHealth } from '../../src/server/health';
import { ServiceHealthServers } from '../../src/server/serviceHealth';
import { FakeClock } from '../../src/sync/clock';

const ep = (address: string, nodeName: string, o: Partial<Endpoint> = {}): Endpoint => ({ address, family: 4, port: 8080, ready: true, serving: true, terminating: false, nodeName, ...o });

function lb(port: number, portName: string, endpoints: Endpoint[]): ServicePort {
  return {
    key: `shop/front:${portName}`, namespace: 'shop', name: 'front', portName, protocol: 'TCP', port: 80, nodePort: 30080, clusterIPs: ['10.0.0.1'], externalIPs: [],
    loadBalancerIPs: ['203.0.113.9'], externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Cluster', sessionAffinity: { type: 'None' }, healthCheckNodePort: port,
    loadBalancerSourceRanges: [], endpoints, allEndpoints: endpoints,
  };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function get(port: number, path = '/'): Promise<{ code: number; headers: Record<string, string | string[] | undefined>; body: string } | 'refused'> {
  return new Promise((resolve) => {
    const req = net.connect(port, '127.0.0.1');
    let data = '';
    req.on('error', () => resolve('refused'));
    req.on('connect', () => req.end(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    req.on('data', (d) => (data += d.toString()));
    req.on('end', () => {
      const [head, ...rest] = data.split('\r\n\r\n');
      const lines = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      resolve({ code: Number(lines[0].split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    });
  });
}

describe('healthCheckNodePort servers', () => {
  it('answer 200 with the ready local endpoint count, 503 without, on any path; follow changes; close when the Service goes', async () => {
    const clock = new FakeClock();
    const health = new ProxyHealth(clock, 60_000);
    const s = new ServiceHealthServers(health, 'node-a', silentLogger, '127.0.0.1');
    const port = await freePort();
    try {
      // Two ports of one Service, one address twice, a remote and a terminating local endpoint: 2 distinct ready local IPs.
      const http = lb(port, 'http', [ep('10.1.0.1', 'node-a'), ep('10.1.0.2', 'node-b'), ep('10.1.0.3', 'node-a', { ready: false, terminating: true })]);
      const https = lb(port, 'https', [ep('10.1.0.1', 'node-a'), ep('10.1.0.4', 'node-a')]);
      await s.update(new Map([[http.key, http], [https.key, https]]));
      const ok = await get(port, '/anything');
      expect(ok).not.toBe('refused');
      if (ok === 'refused') return;
      expect(ok.code).toBe(200);
      expect(ok.headers['content-type']).toBe('application/json');
      expect(ok.headers['x-content-type-options']).toBe('nosniff');
      expect(ok.headers['x-load-balancing-endpoint-weight']).toBe('2');
      expect(JSON.parse(ok.body)).toEqual({ service: { namespace: 'shop', name: 'front' }, localEndpoints: 2, serviceProxyHealthy: true });
      // No ready local endpoint left: 503.
      await s.update(new Map([[http.key, lb(port, 'http', [ep('10.1.0.2', 'node-b')])], [https.key, undefined]]));
      const none = await get(port);
      expect(none !== 'refused' && none.code).toBe(503);
      expect(none !== 'refused' && JSON.parse(none.body).localEndpoints).toBe(0);
      // Endpoints again, but the proxy unhealthy (an update pending past the timeout): 503, serviceProxyHealthy false.
      await s.update(new Map([[http.key, lb(port, 'http', [ep('10.1.0.1', 'node-a')])]]));
      health.queuedUpdate();
      await clock.advance(61_000);
      const sick = await get(port);
      expect(sick !== 'refused' && sick.code).toBe(503);
      expect(sick !== 'refused' && JSON.parse(sick.body).serviceProxyHealthy).toBe(false);
      // The Service gone (a full sync without it): the port is closed.
      await s.replaceAll(new Map());
      expect(await get(port)).toBe('refused');
    } finally {
      await s.close();
    }
  });
});
