import { describe, expect, it } from 'vitest';
import type { Dataplane, SyncResult } from '../../src/dataplane/types';
import { silentLogger } from '../../src/log';
import type { KubeEndpointSlice, KubeService, ServicePort, ServicePortKey } from '../../src/model/types';
import { ProxyHealth } from '../../src/server/health';
import { ProxyMetrics } from '../../src/server/metrics';
import { FakeClock } from '../../src/sync/clock';
import { TRIGGER_TIME_ANNOTATION } from '../../src/sync/clusterState';
import { SyncLoop } from '../../src/sync/syncLoop';

/** Records what it is asked to program; can be told to fail. */
class RecordingDataplane implements Dataplane {
  readonly mode = 'nftables';
  calls: Array<{ full: boolean; keys: string[] }> = [];
  failNext = 0;
  /** When set, the next syncFull waits for this promise (a sync in flight). */
  holdFull: Promise<void> | undefined;
  private needFull = false;
  async syncFull(sp: Map<ServicePortKey, ServicePort>): Promise<SyncResult> {
    const hold = this.holdFull;
    this.holdFull = undefined;
    if (hold) await hold;
    return this.done(true, [...sp.keys()]);
  }
  async syncPartial(ch: Map<ServicePortKey, ServicePort | undefined>): Promise<SyncResult> {
    return this.done(this.needFull, [...ch.keys()]);
  }
  private async done(full: boolean, keys: string[]): Promise<SyncResult> {
    this.calls.push({ full, keys });
    if (this.failNext > 0) {
      this.failNext--;
      this.needFull = true;
      throw new Error('kernel said no (EINVAL) on add element to set ip svcplane service-ips');
    }
    this.needFull = false;
    return { full, operations: keys.length, summary: {}, bytes: 0, kernelMicros: 0, totalMicros: 0, servicePorts: 0, problems: [] };
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

function svc(name: string, rv = '1'): KubeService {
  return { metadata: { name, namespace: 'default', resourceVersion: rv }, spec: { clusterIP: `198.18.100.${name.length}`, ports: [{ name: 'http', port: 80 }] } };
}

function slice(name: string, ips: string[], rv = '1', trigger?: string): KubeEndpointSlice {
  return {
    metadata: { name: `${name}-x`, namespace: 'default', resourceVersion: rv, labels: { 'kubernetes.io/service-name': name }, annotations: trigger ? { [TRIGGER_TIME_ANNOTATION]: trigger } : {} },
    addressType: 'IPv4', endpoints: ips.map((ip) => ({ addresses: [ip] })), ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
  };
}

function setup(opts: { min?: number; sync?: number } = {}) {
  const clock = new FakeClock();
  const dp = new RecordingDataplane();
  const metrics = new ProxyMetrics();
  const health = new ProxyHealth(clock, 2 * (opts.sync ?? 30_000));
  const loop = new SyncLoop({ dataplane: dp, clock, log: silentLogger, metrics, health, minSyncPeriodMs: opts.min ?? 1000, syncPeriodMs: opts.sync ?? 30_000 });
  return { clock, dp, metrics, health, loop };
}

async function metricValue(m: ProxyMetrics, name: string): Promise<number> {
  const text = await m.registry.getSingleMetricAsString(name);
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '_count '));
  return Number(line?.split(' ')[1]);
}

describe('SyncLoop', () => {
  it('programs nothing until both kinds are listed, then one full sync', async () => {
    const { clock, dp, loop } = setup();
    loop.onServicesListed([svc('a'), svc('bb')]);
    loop.onService('ADDED', svc('ccc'));
    await clock.advance(5000);
    expect(dp.calls).toEqual([]);
    loop.onSlicesListed([slice('a', ['198.19.0.1'])]);
    await clock.advance(0);
    expect(dp.calls).toEqual([{ full: true, keys: ['default/a:http', 'default/bb:http', 'default/ccc:http'] }]);
  });

  it('then partial syncs of only what changed, no more often than minSyncPeriod, and a full one every syncPeriod', async () => {
    const { clock, dp, loop } = setup({ min: 1000, sync: 30_000 });
    loop.onServicesListed([svc('a'), svc('bb')]);
    loop.onSlicesListed([]);
    await clock.advance(0);
    loop.onSlice('ADDED', slice('a', ['198.19.0.1']));
    await clock.advance(0);
    // burst of 2 used up by the full sync and this one
    expect(dp.calls.slice(1)).toEqual([{ full: false, keys: ['default/a:http'] }]);
    loop.onSlice('MODIFIED', slice('a', ['198.19.0.2'], '2'));
    loop.onSlice('MODIFIED', slice('a', ['198.19.0.3'], '3'));
    loop.onService('DELETED', svc('bb'));
    await clock.advance(999);
    expect(dp.calls).toHaveLength(2);
    await clock.advance(1);
    expect(dp.calls[2]).toEqual({ full: false, keys: ['default/a:http', 'default/bb:http'] });
    // Nothing else happens: 30 s after the first full sync, a full one.
    await clock.advance(28_000);
    expect(dp.calls).toHaveLength(3);
    await clock.advance(2000);
    expect(dp.calls[3]).toEqual({ full: true, keys: ['default/a:http'] });
  });

  it('a failed sync is retried with backoff, and the retry is full; health turns 503 after 2 x syncPeriod pending', async () => {
    const { clock, dp, loop, health, metrics } = setup({ min: 0, sync: 10_000 });
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([]);
    await clock.advance(0);
    dp.failNext = 3;
    loop.onSlice('ADDED', slice('a', ['198.19.0.1']));
    await clock.advance(0);
    expect(dp.calls.map((c) => c.full)).toEqual([true, false]);
    await clock.advance(1000); // retry 1 after 1 s (full)
    await clock.advance(2000); // retry 2 after 2 s
    expect(dp.calls.map((c) => c.full)).toEqual([true, false, true, true]);
    expect(health.livez().code).toBe(200);
    await clock.advance(4000); // retry 3 after 4 s succeeds
    expect(dp.calls.map((c) => c.full)).toEqual([true, false, true, true, true]);
    expect(await metricValue(metrics, 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total')).toBe(3);

    // Now fail for longer than the health timeout (2 x 10 s): /livez and /healthz report 503.
    dp.failNext = 100;
    loop.onSlice('MODIFIED', slice('a', ['198.19.0.2'], '2'));
    await clock.advance(19_999);
    expect(health.livez().code).toBe(200);
    await clock.advance(1);
    const r = health.livez();
    expect(r.code).toBe(503);
    expect(JSON.parse(r.body)).toMatchObject({ healthy: false });
    expect(JSON.parse(health.healthz().body)).toMatchObject({ nodeEligible: false, healthy: false });
  });

  it('a full sync asked for while a full sync is in flight is not lost: the next sync is full (kube-proxy\'s needFullSync)', async () => {
    const { clock, dp, loop } = setup({ min: 1000, sync: 30_000 });
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', ['198.19.0.1'])]);
    await clock.advance(0);
    expect(dp.calls).toEqual([{ full: true, keys: ['default/a:http'] }]);
    // The periodic full sync starts and is held in the kernel; meanwhile this node's zone changes (resync()).
    let release!: () => void;
    dp.holdFull = new Promise((r) => (release = r));
    const inFlight = loop.nextSync();
    await clock.advance(30_000);
    loop.resync();
    release();
    expect(await inFlight).toMatchObject({ ok: true, full: true });
    // The request made during the sync gets a full sync of its own, well before the next syncPeriod.
    const next = loop.nextSync();
    await clock.advance(1000);
    expect(await next).toMatchObject({ ok: true, full: true });
    expect(dp.calls.map((c) => c.full)).toEqual([true, true, true]);
  });

  it('a throw while gathering the changes (before the dataplane is called) is logged and retried, not swallowed', async () => {
    const { clock, dp, loop } = setup({ min: 1000, sync: 30_000 });
    const errors: string[] = [];
    (loop as unknown as { o: { log: typeof silentLogger } }).o.log = { ...silentLogger, error: (msg: string, f?: Record<string, unknown>) => void errors.push(`${msg}: ${String(f?.error)}`) };
    const collect = loop.tracker.collect.bind(loop.tracker);
    let broken = true;
    loop.tracker.collect = (state) => {
      if (broken) {
        broken = false;
        throw new Error('collect broke');
      }
      return collect(state);
    };
    const first = loop.nextSync();
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', ['198.19.0.1'])]);
    await clock.advance(0);
    expect(await first).toMatchObject({ ok: false, error: 'collect broke' });
    expect(errors).toEqual(['sync failed; the next sync is full: collect broke']);
    // Retried after the backoff (1 s), fully.
    const retry = loop.nextSync();
    await clock.advance(1000);
    expect(await retry).toMatchObject({ ok: true, full: true });
    expect(dp.calls).toEqual([{ full: true, keys: ['default/a:http'] }]);
  });

  it('measures network programming latency from the slice\'s trigger time to the sync', async () => {
    const { clock, loop, metrics } = setup({ min: 0 });
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([]);
    await clock.advance(0);
    await clock.advance(5000);
    const trigger = new Date(clock.wallNow() - 250).toISOString();
    loop.onSlice('ADDED', slice('a', ['198.19.0.1'], '2', trigger));
    await clock.advance(0);
    const text = await metrics.registry.getSingleMetricAsString('kubeproxy_network_programming_duration_seconds');
    expect(text).toContain('kubeproxy_network_programming_duration_seconds_count 1');
    expect(text).toContain('kubeproxy_network_programming_duration_seconds_bucket{le="0.25"} 1');
    expect(text).toContain('kubeproxy_network_programming_duration_seconds_bucket{le="0"} 0');
  });

  it('runs dataplane housekeeping in a turn of its own while it is due, never beside a sync', async () => {
    const { clock, dp, loop } = setup({ min: 0, sync: 600_000 });
    let due = 0;
    let inSync = false;
    let overlapped = false;
    const runs: number[] = [];
    const orig = dp.syncPartial.bind(dp);
    dp.syncPartial = async (ch) => {
      inSync = true;
      await Promise.resolve();
      inSync = false;
      return orig(ch);
    };
    Object.assign(dp, {
      housekeepingDue: () => due > 0,
      housekeeping: async () => {
        if (inSync) overlapped = true;
        runs.push(clock.now());
        due--;
      },
    });
    loop.onServicesListed([svc('a')]);
    loop.onSlicesListed([slice('a', ['198.19.0.1'])]);
    await clock.advance(20_000);
    expect(runs).toEqual([]); // nothing due: never called
    due = 2;
    loop.onSlice('MODIFIED', slice('a', ['198.19.0.2'], '2'));
    await clock.advance(20_000);
    expect(runs).toHaveLength(2);
    expect(overlapped).toBe(false);
    expect(dp.calls.filter((c) => !c.full)).toHaveLength(1); // housekeeping is not a sync of the dataplane
    await loop.stop();
  });
});
