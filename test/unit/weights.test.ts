// Endpoint weights in the nftables dataplane's slots: bounded, and reported when scaled (model/weights.ts).
import { describe, expect, it } from 'vitest';
import { buildProxyModel } from '../../src/model/build';
import { maxWeightedSlots, slotCounts } from '../../src/model/weights';
import type { KubeEndpointSlice, KubeService } from '../../src/model/types';
import { FakeNftClient } from '../../src/dataplane/nftables/fake';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';

describe('slot counts of weighted endpoints', () => {
  it('divides by the greatest common divisor and keeps exact ratios under the bound', () => {
    expect(slotCounts([2, 4, 0, 6])).toEqual({ counts: [1, 2, 0, 3], wanted: 6, scaled: false });
    // A 100:1 ratio among ten endpoints fits the bound exactly.
    expect(slotCounts([...Array(10).fill(100), ...Array(10).fill(1)]).scaled).toBe(false);
    expect(slotCounts([0, 0]).counts).toEqual([0, 0]);
  });

  it('scales down past max(1024, 2 x endpoints), every weighted endpoint keeping a slot and its rank', () => {
    const w = [...Array(2500).fill(100), ...Array(2500).fill(1), 0];
    const r = slotCounts(w);
    expect(r.scaled).toBe(true);
    expect(r.wanted).toBe(252_500);
    const total = r.counts.reduce((a, b) => a + b, 0);
    expect(total).toBeLessThanOrEqual(maxWeightedSlots(5000));
    expect(r.counts[0]).toBeGreaterThan(r.counts[4999]);
    expect(r.counts[4999]).toBe(1);
    expect(r.counts[5000]).toBe(0);
  });
});

describe('the issue\'s amplifying manifest (4 ports, 5000 endpoints, zone/a=100)', () => {
  const ports = [80, 81, 82, 83];
  const svc: KubeService = {
    metadata: { name: 'amp', namespace: 'default', annotations: { 'svcplane.io/endpoint-weights': 'zone/a=100' } },
    spec: { type: 'NodePort', clusterIP: '198.18.100.1', ports: ports.map((p, i) => ({ name: `p${i}`, port: p, nodePort: 30000 + i, protocol: 'TCP' })) },
  };
  const slice: KubeEndpointSlice = {
    metadata: { name: 'amp-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'amp' } },
    addressType: 'IPv4',
    endpoints: Array.from({ length: 5000 }, (_, i) => ({ addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], zone: i % 2 ? 'a' : 'b', conditions: { ready: true } })),
    ports: ports.map((_p, i) => ({ name: `p${i}`, port: 8000 + i, protocol: 'TCP' })),
  };

  it('is programmed within the bound, and the Service is reported as scaled', async () => {
    const m = buildProxyModel([svc], [slice]);
    const scaled = m.problems.filter((p) => /would need 252500 slots; scaled down/.test(p.message));
    expect(scaled.map((p) => p.object)).toEqual(Array(4).fill('Service default/amp'));
    const fake = new FakeNftClient();
    const p = new NftablesProxier(fake, defaultConfig({ clusterCIDRs: ['10.0.0.0/8'] }));
    await p.syncFull(m.servicePorts);
    const elements = (fake.dump().match(/\n/g) ?? []).length;
    // Before the bound: 1,010,000 elements. Now at most 2 x endpoints slots per port and pick kind.
    expect(elements).toBeLessThan(4 * 2 * maxWeightedSlots(5000) + 50_000);
  }, 120_000);
});

describe('element comments within the kernel\'s user-data size', () => {
  it('keep the Service port name whole and as many reasons as fit', async () => {
    const { commentWithReasons } = await import('../../src/dataplane/nftables/rules/fragment');
    const { MAX_COMMENT_BYTES, encodeElementComment, decodeElementComment } = await import('../../src/dataplane/nftables/netlink/udata');
    const key = `${'n'.repeat(63)}/${'s'.repeat(63)}:${'p'.repeat(63)}`;
    const reasons = ['internalTrafficPolicy Local: endpoints on this node only', 'topology hints for zone eu-west-1a', 'weighted'];
    const c = commentWithReasons(key, reasons);
    expect(Buffer.byteLength(c)).toBeLessThanOrEqual(MAX_COMMENT_BYTES);
    expect(c.startsWith(`${key} (`)).toBe(true);
    expect(c).toMatch(/\+\d more\)$/);
    expect(decodeElementComment(encodeElementComment(c))).toBe(c);
    expect(commentWithReasons('ns/a:http', reasons)).toBe(`ns/a:http (${reasons.join('; ')})`);
  });
});
