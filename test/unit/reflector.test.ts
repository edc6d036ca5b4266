// The reflector against the API-server double, over real HTTP: paging, resuming, bookmarks, 410, outages.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_WATCH_LINE_BYTES, Reflector, type WatchObject } from '../../src/k8s/reflector';
import { openTransport, retryAfterMs, type RequestBounds } from '../../src/k8s/transport';
import { createLogger, silentLogger } from '../../src/log';
import { ApiServerDouble } from '../apiserver/double';

function svc(name: string, port = 80) {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { clusterIP: '198.18.100.1', ports: [{ port }] } };
}

async function until(pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('Reflector against the API-server double', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(opts: { pageSize?: number; bookmarkIntervalMs?: number; bounds?: RequestBounds; backoff?: { initialMs: number; maxMs: number } } = {}) {
    const api = new ApiServerDouble({ bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000 });
    await api.start();
    cleanups.push(() => api.stop());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-refl-'));
    fs.writeFileSync(path.join(dir, 'kubeconfig'), api.kubeconfig());
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const transport = await openTransport(path.join(dir, 'kubeconfig'), opts.bounds);
    const seen = { lists: [] as string[][], events: [] as string[], restarts: [] as string[], failing: [] as string[], recovered: 0 };
    let current: string[] = [];
    const r = new Reflector(transport, { path: '/api/v1/services', resource: 'services', pageSize: opts.pageSize, backoff: opts.backoff ?? { initialMs: 50, maxMs: 200 } }, {
      listPage: (items: WatchObject[], first: boolean) => {
        if (first) current = [];
        current.push(...items.map((i) => i.metadata!.name!));
      },
      listDone: () => seen.lists.push(current),
      event: (type, obj) => seen.events.push(`${type} ${obj.metadata!.name}`),
      restarted: (reason) => seen.restarts.push(reason),
      failing: (error) => seen.failing.push(error),
      recovered: () => seen.recovered++,
    }, process.env.DEBUG_REFL ? createLogger({ verbosity: 4, format: 'text', stream: process.stderr }) : silentLogger);
    cleanups.push(() => r.stop());
    return { api, r, seen };
  }

  it('lists page by page, then watches from the list\'s resourceVersion with bookmarks asked for', async () => {
    const { api, r, seen } = await setup({ pageSize: 2 });
    for (const n of ['a', 'b', 'c', 'd', 'e']) api.apply(svc(n));
    r.start();
    await until(() => seen.lists.length === 1 && api.openWatches('Service') === 1);
    expect(seen.lists[0]).toEqual(['a', 'b', 'c', 'd', 'e']);
    const lists = api.requests.filter((q) => q.query.watch === undefined);
    expect(lists.map((q) => q.query.limit)).toEqual(['2', '2', '2']);
    const watch = api.requests.find((q) => q.query.watch === 'true')!;
    expect(watch.query).toMatchObject({ resourceVersion: api.resourceVersion, allowWatchBookmarks: 'true' });
    api.apply(svc('a', 81));
    api.remove('Service', 'default', 'b');
    await until(() => seen.events.length === 2);
    expect(seen.events).toEqual(['MODIFIED a', 'DELETED b']);
  });

  it('resumes a dropped watch from the last resourceVersion (a bookmark\'s too) without relisting or replaying', async () => {
    const { api, r, seen } = await setup({ bookmarkIntervalMs: 100 });
    api.apply(svc('a'));
    r.start();
    await until(() => api.openWatches('Service') === 1);
    api.apply(svc('b'));
    await until(() => seen.events.length === 1);
    // A write this watch does not see (a Node) moves the resourceVersion on; only a bookmark can tell the
    // reflector. Let one arrive, then cut the connection.
    api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
    await new Promise((res) => setTimeout(res, 300));
    const rvAtDrop = api.resourceVersion;
    api.dropWatches();
    await until(() => api.openWatches('Service') === 1);
    const resumed = api.requests.filter((q) => q.query.watch === 'true').at(-1)!;
    expect(resumed.query.resourceVersion).toBe(rvAtDrop);
    api.apply(svc('c'));
    await until(() => seen.events.length === 2);
    expect(seen.events).toEqual(['ADDED b', 'ADDED c']);
    expect(seen.lists).toHaveLength(1);
  });

  it('relists on ERROR 410 Expired and on a resourceVersion compacted while disconnected', async () => {
    const { api, r, seen } = await setup();
    api.apply(svc('a'));
    r.start();
    await until(() => api.openWatches('Service') === 1);
    api.apply(svc('b'));
    api.expireWatches();
    await until(() => seen.lists.length === 2 && api.openWatches('Service') === 1);
    expect(seen.lists[1]).toEqual(['a', 'b']);
    expect(seen.restarts).toContain('expired');

    // Disconnected, then history compacted: the resume gets 410 (as an event) and relists.
    await api.pause();
    api.apply(svc('c'));
    api.compact();
    await api.resume();
    await until(() => seen.lists.length === 3);
    expect(seen.lists[2]).toEqual(['a', 'b', 'c']);
  });

  it('keeps retrying while the API server is gone, and carries on when it is back', async () => {
    const { api, r, seen } = await setup();
    r.start();
    await until(() => api.openWatches('Service') === 1);
    await api.pause();
    await new Promise((res) => setTimeout(res, 800));
    expect(seen.restarts.filter((x) => x === 'error').length).toBeGreaterThanOrEqual(2);
    await api.resume();
    await until(() => api.openWatches('Service') === 1);
    api.apply(svc('z'));
    await until(() => seen.events.includes('ADDED z'));
    expect(seen.lists).toHaveLength(1);
  });

  // ---- faults: each of these left the agent blind for good, or hammering the server, before the bounds --------

  const bounds: RequestBounds = { connectMs: 2_000, headersMs: 400, listBodyMs: 600 };
  const watchRequests = (api: ApiServerDouble) => api.requests.filter((q) => q.query.watch === 'true');
  const listRequests = (api: ApiServerDouble) => api.requests.filter((q) => q.query.watch === undefined);

  it('gives up on a request that never gets response headers, says so, and recovers when the server answers', async () => {
    const { api, r, seen } = await setup({ bounds });
    api.apply(svc('a'));
    api.setFault({ kind: 'hang' });
    r.start();
    await until(() => seen.failing.length >= 2);
    expect(seen.failing[0]).toMatch(/no response headers .* in 0\.4 s/);
    // Every held request was abandoned by the client, not left open.
    await until(() => api.held.length >= 2 && api.held.slice(0, -1).every((h) => h.clientGone));
    api.setFault(undefined);
    await until(() => seen.lists.length === 1 && api.openWatches('Service') === 1);
    await until(() => seen.recovered === 1);
    expect(seen.lists[0]).toEqual(['a']);
  });

  it('gives up on a list body that trickles, and recovers', async () => {
    const { api, r, seen } = await setup({ bounds });
    api.apply(svc('a'));
    api.setFault({ kind: 'trickle-lists', intervalMs: 50 });
    r.start();
    await until(() => seen.failing.length >= 1);
    expect(seen.failing[0]).toMatch(/response body not complete after 0\.6 s/);
    api.setFault(undefined);
    await until(() => seen.lists.length === 1);
    expect(seen.lists[0]).toEqual(['a']);
  });

  it('backs off on watches the server closes at once with nothing (client-go\'s "very short watch")', async () => {
    const { api, r, seen } = await setup({ backoff: { initialMs: 100, maxMs: 400 } });
    r.start();
    await until(() => api.openWatches('Service') === 1);
    api.setFault({ kind: 'close-watches' });
    api.dropWatches();
    const from = watchRequests(api).length;
    await until(() => seen.restarts.filter((x) => x === 'short').length >= 4);
    // Without the backoff, these came 40-45 a second; with it, the gaps grow: the last exceeds the first.
    const at = watchRequests(api).slice(from).map((q) => q.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]);
    expect(gaps.length).toBeGreaterThanOrEqual(3);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(90);
    expect(seen.failing.at(-1)).toMatch(/closed by the server within 1 s with no event/);
    api.setFault(undefined);
    await until(() => seen.recovered >= 1 && api.openWatches('Service') === 1);
  });

  it('relists at once after one 410, but backs off when every watch is answered 410', async () => {
    const { api, r, seen } = await setup({ backoff: { initialMs: 100, maxMs: 400 } });
    r.start();
    await until(() => api.openWatches('Service') === 1);
    api.setFault({ kind: 'expire-watches' });
    api.dropWatches();
    const from = listRequests(api).length;
    await until(() => seen.lists.length >= 5);
    const at = listRequests(api).slice(from).map((q) => q.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]);
    // 22-42 relists a second before; now each repeat waits at least the initial backoff.
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(90);
    expect(seen.restarts.filter((x) => x === 'expired').length).toBeGreaterThanOrEqual(4);
    api.setFault(undefined);
    await until(() => api.openWatches('Service') === 1 && seen.recovered >= 1);
  });

  it('relists at once when the server comes back from an outage with its history moved on (not after the outage\'s backoff)', async () => {
    const { api, r, seen } = await setup({ backoff: { initialMs: 300, maxMs: 5_000 } });
    r.start();
    await until(() => api.openWatches('Service') === 1);
    await api.pause();
    // Five failures: the backoff is now at least 300 * 2^4 = 4.8 s.
    await until(() => seen.restarts.filter((x) => x === 'error').length >= 5, 60_000);
    api.apply(svc('late'));
    api.compact();
    const back = Date.now();
    await api.resume();
    await until(() => seen.lists.length === 2, 60_000);
    expect(seen.lists[1]).toEqual(['late']);
    const resumedWatch = api.requests.find((q) => q.at >= back && q.query.watch === 'true');
    const relist = api.requests.find((q) => q.at >= back && q.query.watch === undefined);
    expect(resumedWatch, 'the first request once back resumes the watch (and gets 410)').toBeDefined();
    // At once: well under the 4.8 s the outage's backoff would have waited.
    expect(relist!.at - resumedWatch!.at).toBeLessThan(2_000);
  }, 90_000);

  it('waits as long as Retry-After says on 429 and 503', async () => {
    const { api, r, seen } = await setup();
    api.setFault({ kind: 'status', code: 429, retryAfter: '1' });
    r.start();
    await until(() => api.requests.length >= 3);
    api.setFault({ kind: 'status', code: 503, retryAfter: '1' });
    await until(() => api.requests.length >= 5);
    const at = api.requests.map((q) => q.at);
    // The backoff here is 50-200 ms; only Retry-After explains gaps of a second.
    for (let i = 1; i < at.length; i++) expect(at[i] - at[i - 1]).toBeGreaterThanOrEqual(950);
    expect(seen.failing[0]).toMatch(/HTTP 429 TooManyRequests: injected \(Retry-After 1 s\)/);
    api.setFault(undefined);
    await until(() => seen.lists.length === 1);
  });

  it('drops a watch whose line never ends (bounded), and relists', async () => {
    const { api, r, seen } = await setup();
    api.apply(svc('a'));
    r.start();
    await until(() => seen.lists.length === 1 && api.openWatches('Service') === 1);
    const taken = await api.sendLongLine(50 * 1024 * 1024);
    // The client hung up once the line passed the bound: it did not read (or hold) 50 MB. (What the server counts
    // as sent includes both sockets' buffers, a few MB on loopback.)
    expect(taken[0]).toBeLessThan(MAX_WATCH_LINE_BYTES + 16 * 1024 * 1024);
    await until(() => seen.lists.length === 2 && api.openWatches('Service') === 1);
    expect(seen.failing.at(-1)).toMatch(/event line over 8 MiB without a newline/);
    api.apply(svc('b'));
    await until(() => seen.events.includes('ADDED b'));
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates, and caps what it waits', () => {
    expect(retryAfterMs('3')).toBe(3000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(retryAfterMs('86400')).toBe(600_000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });
});
