// The churn svcplane bench applies: rolling-deployment changes in their proportions, a cluster that keeps its size.
import { describe, expect, it } from 'vitest';
import { RollingChurn } from '../../src/bench/churn';
import { toModel } from '../../src/bench/model';
import { makeServices } from '../../src/bench/shape';
import type { ServicePort, ServicePortKey } from '../../src/model/types';

describe('RollingChurn', () => {
  it('makes endpoint changes in thirds (added, terminating, removed), 2% whole-Service changes, and keeps the cluster\'s size', () => {
    const model = toModel(makeServices(200, 3));
    const churn = new RollingChurn(model);
    const state = new Map<ServicePortKey, ServicePort>(model);
    const kinds: Record<string, number> = {};
    for (let i = 0; i < 6000; i++) {
      const c = churn.next();
      kinds[c.kind] = (kinds[c.kind] ?? 0) + 1;
      if (c.servicePort) state.set(c.key, c.servicePort);
      else state.delete(c.key);
      expect(state.size).toBeGreaterThanOrEqual(199);
    }
    const share = (k: string) => (kinds[k] ?? 0) / 6000;
    for (const k of ['endpoint added', 'endpoint terminating', 'endpoint removed']) expect(share(k)).toBeCloseTo(0.327, 1);
    expect(share('Service removed') + share('Service added')).toBeGreaterThan(0.01);
    expect(share('Service removed') + share('Service added')).toBeLessThan(0.03);
    // A rollout step leaves each Service between M and M+1 endpoints, at most one of them terminating.
    for (const sp of state.values()) {
      expect(sp.endpoints.length).toBeGreaterThanOrEqual(3);
      expect(sp.endpoints.length).toBeLessThanOrEqual(4);
      expect(sp.endpoints.filter((e) => e.terminating).length).toBeLessThanOrEqual(1);
    }
  });

  it('is deterministic: two runs make the same changes', () => {
    const model = toModel(makeServices(50, 2));
    const a = new RollingChurn(model);
    const b = new RollingChurn(model);
    for (let i = 0; i < 500; i++) expect(JSON.stringify(a.next())).toBe(JSON.stringify(b.next()));
  });
});
