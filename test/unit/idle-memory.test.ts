// The agent hands V8's heap back once its syncs stop (src/sync/memory.ts). Before, a burst of syncs left the heap
// V8 had grown (garbage in old space, a 32 MB new space) in the process until V8's memory reducer watchdog, ~100 s
// after the last GC: 200k EndpointSlice updates at 10k Services left ~300 MB idle against ~33 MB live. The timing
// rules are tested with the fake clock; the collection itself with V8's own heap statistics, generous bounds.
import * as v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import type { Dataplane, SyncResult } from '../../src/dataplane/types';
import { silentLogger } from '../../src/log';
import type { KubeEndpointSlice, KubeService, ServicePort, ServicePortKey } from '../../src/model/types';
import { ProxyHealth } from '../../src/server/health';
import { ProxyMetrics } from '../../src/server/metrics';
import { FakeClock } from '../../src/sync/clock';
import { IdleHeapRelease, MIN_GROWTH_BYTES, QUIET_MS, collectGarbage } from '../../src/sync/memory';
import { SyncLoop } from '../../src/sync/syncLoop';

const MB = 1024 * 1024;

class QuietDataplane implements Dataplane {
  readonly mode = 'nftables';
  async syncFull(sp: Map<ServicePortKey, ServicePort>): Promise<SyncResult> {
    return this.done(true, sp.size);
  }
  async syncPartial(ch: Map<ServicePortKey, ServicePort | undefined>): Promise<SyncResult> {
    return this.done(false, ch.size);
  }
  private async done(full: boolean, n: number): Promise<SyncResult> {
    return { full, operations: n, summary: {}, bytes: 0, kernelMicros: 0, totalMicros: 0, servicePorts: n, problems: [] };
  }
  async cleanup() {
    return true;
  }
  async status() {
    return { mode: 'nftables', present: true, rows: [] };
  }
  async explain() {
    return []; // a sync-loop double: nothing programmed to explain
  }
  close() {}
}

function svc(name: string): KubeService {
  return { metadata: { name, namespace: 'default', resourceVersion: '1' }, spec: { clusterIP: '198.18.100.1', ports: [{ name: 'http', port: 80 }] } };
}

function slice(name: string, ip: string, rv: string): KubeEndpointSlice {
  return {
    metadata: { name: `${name}-x`, namespace: 'default', resourceVersion: rv, labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4', endpoints: [{ addresses: [ip] }], ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
  };
}

/**
 * A loop whose heap "grows" by what the test says and whose collections are counted. `youngAfter`: the new space
 * each collection leaves (V8 shrinks it to 1 MB only when little was allocated just before).
 */
function setup(youngAfter: number[] = []) {
  const clock = new FakeClock();
  let heap = 100 * MB;
  let young = 32 * MB;
  const collected: number[] = [];
  const heapRelease = new IdleHeapRelease({
    clock, log: silentLogger, heapSize: () => heap, youngSize: () => young,
    collect: async () => {
      collected.push(clock.now());
      heap = 40 * MB; // what a full GC leaves
      young = youngAfter.shift() ?? 1 * MB;
    },
  });
  const loop = new SyncLoop({
    dataplane: new QuietDataplane(), clock, log: silentLogger, metrics: new ProxyMetrics(), health: new ProxyHealth(clock, 60_000),
    minSyncPeriodMs: 1000, syncPeriodMs: 3_600_000, heapRelease,
  });
  return { clock, loop, collected, grow: (bytes: number) => (heap += bytes) };
}

describe('idle heap release', () => {
  it('collects once after the first sync, once the loop has been quiet for QUIET_MS', async () => {
    const { clock, loop, collected } = setup();
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', '198.19.0.1', '1')]);
    await clock.advance(0);
    expect(loop.syncCount).toBe(1);
    await clock.advance(QUIET_MS - 1);
    expect(collected).toEqual([]);
    await clock.advance(1);
    expect(collected).toHaveLength(1);
    // Nothing happens afterwards: no second collection while nothing syncs.
    await clock.advance(10 * QUIET_MS);
    expect(collected).toHaveLength(1);
    await loop.stop();
  });

  it('never collects during a burst of syncs; collects once when the burst ends, if the heap grew', async () => {
    const { clock, loop, collected, grow } = setup();
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', '198.19.0.1', '1')]);
    await clock.advance(QUIET_MS);
    expect(collected).toHaveLength(1);
    // 200 updates 500 ms apart: syncs every second (minSyncPeriod), the heap growing all along.
    const burstStart = clock.now();
    for (let i = 0; i < 200; i++) {
      loop.onSlice('MODIFIED', slice('a', `198.19.0.${(i % 250) + 2}`, String(i + 2)));
      grow(MB);
      await clock.advance(500);
    }
    const burstEnd = clock.now();
    expect(loop.syncCount).toBeGreaterThan(90);
    expect(collected).toHaveLength(1);
    await clock.advance(QUIET_MS + 1000);
    expect(collected).toHaveLength(2);
    expect(collected[1]).toBeGreaterThanOrEqual(burstEnd + QUIET_MS - 1000);
    expect(collected[1]).toBeGreaterThan(burstStart);
    await loop.stop();
  });

  it('leaves a quiet agent alone when its heap has hardly grown since the last collection', async () => {
    const { clock, loop, collected, grow } = setup();
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', '198.19.0.1', '1')]);
    await clock.advance(QUIET_MS);
    expect(collected).toHaveLength(1);
    loop.onSlice('MODIFIED', slice('a', '198.19.0.2', '2'));
    grow(MIN_GROWTH_BYTES / 2);
    await clock.advance(3 * QUIET_MS);
    expect(loop.syncCount).toBe(2);
    expect(collected).toHaveLength(1);
    // Growth past the bound: the next quiet period collects.
    loop.onSlice('MODIFIED', slice('a', '198.19.0.3', '3'));
    grow(MIN_GROWTH_BYTES);
    await clock.advance(3 * QUIET_MS);
    expect(collected).toHaveLength(2);
    await loop.stop();
  });

  it('collects once more, a quiet period later, when the first collection left the new space grown', async () => {
    const { clock, loop, collected } = setup([32 * MB, 1 * MB]);
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', '198.19.0.1', '1')]);
    await clock.advance(0);
    const synced = clock.now();
    await clock.advance(QUIET_MS);
    expect(collected).toEqual([synced + QUIET_MS]);
    await clock.advance(QUIET_MS);
    expect(collected).toEqual([synced + QUIET_MS, synced + 2 * QUIET_MS]);
    // Shrunk now: no third one.
    await clock.advance(10 * QUIET_MS);
    expect(collected).toHaveLength(2);
    await loop.stop();
  });

  it('no follow-up collection when a sync comes first: the loop is busy again', async () => {
    const { clock, loop, collected } = setup([32 * MB, 32 * MB]);
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', '198.19.0.1', '1')]);
    await clock.advance(QUIET_MS);
    expect(collected).toHaveLength(1);
    loop.onSlice('MODIFIED', slice('a', '198.19.0.2', '2'));
    await clock.advance(QUIET_MS / 2);
    expect(loop.syncCount).toBe(2);
    // The heap has not grown since: the ordinary quiet check leaves it alone, and the follow-up was cancelled.
    await clock.advance(5 * QUIET_MS);
    expect(collected).toHaveLength(1);
    await loop.stop();
  });

  it('a stopped loop collects nothing', async () => {
    const { clock, loop, collected } = setup();
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', '198.19.0.1', '1')]);
    await clock.advance(0);
    await loop.stop();
    await clock.advance(3 * QUIET_MS);
    expect(collected).toEqual([]);
  });

  it('collectGarbage returns what a churn of medium-lived objects grew, without --expose-gc, and warns of nothing', async () => {
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      // Objects that live a while (as a parsed slice lives until its Service's next update) are promoted to old
      // space, then dropped: old space grows with garbage that nothing collects until V8 decides to.
      let window: Array<Array<{ address: string; port: number; ready: boolean }>> = [];
      for (let i = 0; i < 400; i++) {
        window.push(Array.from({ length: 2000 }, (_, j) => ({ address: `198.18.${i & 127}.${j & 255}`, port: 8080 + j, ready: true })));
        if (window.length > 40) window.shift();
      }
      window = [];
      const before = v8.getHeapStatistics();
      await collectGarbage();
      const after = v8.getHeapStatistics();
      // Generous bounds: the point is that the garbage went and the heap V8 holds shrank, not by how much exactly.
      expect(after.used_heap_size).toBeLessThan(before.used_heap_size * 0.7);
      expect(after.total_heap_size).toBeLessThan(before.total_heap_size * 0.8);
      expect(window).toEqual([]);
    } finally {
      await new Promise((r) => setImmediate(r));
      process.off('warning', onWarning);
    }
    expect(warnings).toEqual([]);
  });
});
