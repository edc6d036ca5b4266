// The reflector against the API-server double, over real HTTP: paging, resuming, bookmarks, 410, outages.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Reflector, type WatchObject } from '../../src/k8s/reflector';
import { openTransport } from '../../src/k8s/transport';
import { silentLogger } from '../../src/log';
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

  async function setup(opts: { pageSize?: number; bookmarkIntervalMs?: number } = {}) {
    const api = new ApiServerDouble({ bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000 });
    await api.start();
    cleanups.push(() => api.stop());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-refl-'));
    fs.writeFileSync(path.join(dir, 'kubeconfig'), api.kubeconfig());
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const transport = await openTransport(path.join(dir, 'kubeconfig'));
    const seen = { lists: [] as string[][], events: [] as string[], restarts: [] as string[] };
    let current: string[] = [];
    const r = new Reflector(transport, { path: '/api/v1/services', resource: 'services', pageSize: opts.pageSize, backoff: { initialMs: 50, maxMs: 200 } }, {
      listPage: (items: WatchObject[], first: boolean) => {
        if (first) current = [];
        current.push(...items.map((i) => i.metadata!.name!));
      },
      listDone: () => seen.lists.push(current),
      event: (type, obj) => seen.events.push(`${type} ${obj.metadata!.name}`),
      restarted: (reason) => seen.restarts.push(reason),
    }, silentLogger);
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
});
