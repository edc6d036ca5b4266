import { describe, expect, it } from 'vitest';
import { nodeInfoOf } from '../../src/k8s/node';
import { ProxyHealth, serviceHealthBody } from '../../src/server/health';
import { FakeClock } from '../../src/sync/clock';

describe('ProxyHealth (kube-proxy\'s /healthz and /livez)', () => {
  it('is healthy until a queued update has waited healthTimeout; an update clears it', async () => {
    const clock = new FakeClock();
    const h = new ProxyHealth(clock, 60_000);
    h.setNode(nodeInfoOf({ metadata: {} }));
    h.updated();
    h.queuedUpdate();
    await clock.advance(59_999);
    expect(h.healthz().code).toBe(200);
    h.queuedUpdate(); // a later change does not reset the oldest pending one
    await clock.advance(1);
    expect([h.healthz().code, h.livez().code]).toEqual([503, 503]);
    const body = JSON.parse(h.livez().body) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['lastUpdated', 'currentTime', 'healthy']);
    h.updated();
    expect(h.healthz().code).toBe(200);
    // Healthy: lastUpdated reads as now (kube-proxy's backward-compatible quirk).
    const ok = JSON.parse(h.healthz().body) as Record<string, unknown>;
    expect(ok).toMatchObject({ nodeEligible: true, healthy: true });
    expect(ok.lastUpdated).toBe(ok.currentTime);
  });

  it('/healthz (not /livez) is 503, with the reason, once a watch has been failing for healthTimeout', async () => {
    const clock = new FakeClock();
    const h = new ProxyHealth(clock, 60_000);
    h.setNode(nodeInfoOf({ metadata: {} }));
    h.watchListed('services');
    h.watchFailing('services', 'GET /api/v1/services: no response headers in 30 s');
    await clock.advance(30_000);
    h.watchFailing('services', 'connect ECONNREFUSED'); // the streak goes on: it started 30 s ago
    expect(h.healthz().code).toBe(200);
    await clock.advance(30_000);
    expect([h.healthz().code, h.livez().code]).toEqual([503, 200]);
    expect(JSON.parse(h.healthz().body)).toMatchObject({ healthy: true, nodeEligible: true, reason: 'services watch failing for 60 s: connect ECONNREFUSED' });
    h.watchRecovered('services');
    expect(h.healthz().code).toBe(200);
    expect(JSON.parse(h.healthz().body)).not.toHaveProperty('reason');
  });

  it('a watch failing before its first list is blind at once (at start nothing is known: nothing to wait out)', async () => {
    const clock = new FakeClock();
    const h = new ProxyHealth(clock, 60_000);
    h.setNode(nodeInfoOf({ metadata: {} }));
    h.watchFailing('endpointslices', 'connect ETIMEDOUT 10.96.0.1:443');
    expect([h.healthz().code, h.livez().code]).toEqual([503, 200]);
    expect(JSON.parse(h.healthz().body)).toMatchObject({ reason: 'endpointslices watch failing for 0 s (nothing listed yet): connect ETIMEDOUT 10.96.0.1:443' });
    h.watchListed('endpointslices');
    h.watchRecovered('endpointslices');
    h.watchFailing('endpointslices', 'connect ECONNREFUSED');
    expect(h.healthz().code).toBe(200);
  });

  it('/healthz (not /livez) is 503 when the Node is missing, being deleted, or tainted for deletion', () => {
    const h = new ProxyHealth(new FakeClock(), 60_000);
    expect([h.healthz().code, h.livez().code]).toEqual([503, 200]);
    h.setNode(nodeInfoOf({ metadata: { deletionTimestamp: '2026-01-01T00:00:00Z' } }));
    expect(h.healthz().code).toBe(503);
    h.setNode(nodeInfoOf({ spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] } }));
    expect(h.healthz().code).toBe(503);
    h.setNode(nodeInfoOf({ spec: { taints: [{ key: 'node.kubernetes.io/unschedulable' }] } }));
    expect(h.healthz().code).toBe(200);
  });

  it('reads primary IPs per family (InternalIP first) and the zone from the Node', () => {
    expect(nodeInfoOf({
      metadata: { labels: { 'topology.kubernetes.io/zone': 'z1' } },
      status: { addresses: [{ type: 'Hostname', address: 'n1' }, { type: 'ExternalIP', address: '203.0.113.9' }, { type: 'InternalIP', address: '10.0.0.5' }, { type: 'InternalIP', address: 'FD00::5' }] },
    })).toMatchObject({ primaryIPs: ['10.0.0.5', 'fd00::5'], zone: 'z1' });
  });

  it('healthCheckNodePort body is kube-proxy\'s, byte for byte', () => {
    expect(serviceHealthBody('ns', 'web', 2, true)).toBe('{\n\t"service": {\n\t\t"namespace": "ns",\n\t\t"name": "web"\n\t},\n\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}');
  });
});
