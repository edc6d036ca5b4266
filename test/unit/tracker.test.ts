import { describe, expect, it } from 'vitest';
import { ClusterState, TRIGGER_TIME_ANNOTATION } from '../../src/sync/clusterState';
import { ChangeTracker, sameServicePort } from '../../src/sync/tracker';
import type { KubeEndpointSlice, KubeService, ServicePort } from '../../src/model/types';

function service(name: string, opts: { rv?: string; port?: number; ns?: string; clusterIP?: string } = {}): KubeService {
  return {
    metadata: { name, namespace: opts.ns ?? 'default', resourceVersion: opts.rv ?? '1' },
    spec: { clusterIP: opts.clusterIP ?? '198.18.100.1', ports: [{ name: 'http', protocol: 'TCP', port: opts.port ?? 80 }] },
  };
}

function slice(name: string, svc: string, ips: string[], opts: { rv?: string; trigger?: string; ready?: boolean } = {}): KubeEndpointSlice {
  return {
    metadata: {
      name, namespace: 'default', resourceVersion: opts.rv ?? '1', labels: { 'kubernetes.io/service-name': svc },
      annotations: opts.trigger ? { [TRIGGER_TIME_ANNOTATION]: opts.trigger } : {},
    },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: opts.ready ?? true } })),
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
  };
}

const START = Date.parse('2026-01-01T00:00:00Z');

function setup() {
  const state = new ClusterState();
  const tracker = new ChangeTracker(START);
  const addService = (s: KubeService) => tracker.serviceChanged([state.upsertService(s).key!]);
  const addSlice = (s: KubeEndpointSlice) => {
    const r = state.upsertSlice(s);
    tracker.endpointsChanged(r.services, r.triggerTime);
  };
  return { state, tracker, addService, addSlice };
}

describe('ClusterState + ChangeTracker', () => {
  it('reports a new Service port with its endpoints, then only what changes', () => {
    const { state, tracker, addService, addSlice } = setup();
    addService(service('a'));
    addSlice(slice('a-1', 'a', ['198.19.0.1', '198.19.0.2']));
    let p = tracker.collect(state);
    expect([...p.changes.keys()]).toEqual(['default/a:http']);
    expect(p.changes.get('default/a:http')!.endpoints.map((e) => e.address)).toEqual(['198.19.0.1', '198.19.0.2']);

    // One endpoint goes not-ready: the port changes.
    addSlice(slice('a-1', 'a', ['198.19.0.1'], { rv: '2' }));
    p = tracker.collect(state);
    expect(p.changes.get('default/a:http')!.endpoints.map((e) => e.address)).toEqual(['198.19.0.1']);

    // Nothing marked: nothing to do.
    expect(tracker.collect(state).changes.size).toBe(0);
  });

  it('an add followed by its delete, or a change and its undo, is no change', () => {
    const { state, tracker, addService, addSlice } = setup();
    addService(service('a'));
    addSlice(slice('a-1', 'a', ['198.19.0.1']));
    tracker.collect(state);

    addService(service('b'));
    tracker.serviceChanged([state.deleteService(service('b'))!]);
    addSlice(slice('a-1', 'a', ['198.19.0.1', '198.19.0.9'], { rv: '2' }));
    addSlice(slice('a-1', 'a', ['198.19.0.1'], { rv: '3' }));
    const p = tracker.collect(state);
    expect(p.changes.size).toBe(0);
    expect(p.servicesExamined).toBe(2);
  });

  it('a deleted Service reports its ports gone; its slices wait for it to come back', () => {
    const { state, tracker, addService, addSlice } = setup();
    addService(service('a'));
    addSlice(slice('a-1', 'a', ['198.19.0.1']));
    tracker.collect(state);
    tracker.serviceChanged([state.deleteService(service('a'))!]);
    let p = tracker.collect(state);
    expect([...p.changes]).toEqual([['default/a:http', undefined]]);
    addService(service('a', { rv: '5' }));
    p = tracker.collect(state);
    expect(p.changes.get('default/a:http')!.endpoints.map((e) => e.address)).toEqual(['198.19.0.1']);
  });

  it('the same resourceVersion again (a relist) marks nothing; a relist deletes what vanished meanwhile', () => {
    const { state, tracker, addService, addSlice } = setup();
    addService(service('a'));
    addService(service('b', { clusterIP: '198.18.100.2' }));
    addSlice(slice('a-1', 'a', ['198.19.0.1']));
    addSlice(slice('b-1', 'b', ['198.19.0.2']));
    tracker.collect(state);

    const svcs = state.replaceServices([service('a')]);
    expect(svcs.keys).toEqual(['default/b']);
    const slices = state.replaceSlices([slice('a-1', 'a', ['198.19.0.1'])]);
    expect(slices.keys).toEqual(['default/b']);
    tracker.serviceChanged(svcs.keys);
    tracker.endpointsChanged(slices.keys);
    const p = tracker.collect(state);
    expect([...p.changes]).toEqual([['default/b:http', undefined]]);
    expect([...tracker.all().keys()]).toEqual(['default/a:http']);
  });

  it('a slice whose service-name label moves changes both Services', () => {
    const { state, tracker, addService, addSlice } = setup();
    addService(service('a'));
    addService(service('b', { clusterIP: '198.18.100.2' }));
    addSlice(slice('s', 'a', ['198.19.0.1']));
    tracker.collect(state);
    addSlice(slice('s', 'b', ['198.19.0.1'], { rv: '2' }));
    const p = tracker.collect(state);
    expect(p.changes.get('default/a:http')!.endpoints).toEqual([]);
    expect(p.changes.get('default/b:http')!.endpoints.map((e) => e.address)).toEqual(['198.19.0.1']);
  });

  it('carries trigger times of slice changes made after the agent started, once', () => {
    const { state, tracker, addService, addSlice } = setup();
    addService(service('a'));
    addSlice(slice('a-1', 'a', ['198.19.0.1'], { trigger: '2025-12-31T23:00:00Z' }));
    expect(tracker.collect(state).triggerTimes).toEqual([]);
    addSlice(slice('a-1', 'a', ['198.19.0.2'], { rv: '2', trigger: '2026-01-01T00:00:05Z' }));
    expect(tracker.collect(state).triggerTimes).toEqual([START + 5000]);
    expect(tracker.collect(state).triggerTimes).toEqual([]);
  });

  it('a malformed Service is reported on collect and programs nothing; the others go on', () => {
    const { state, tracker, addService } = setup();
    addService(service('good'));
    addService({ metadata: { name: 'bad', namespace: 'default' }, spec: { clusterIP: '198.18.100.3', ports: [{ port: 70000 }] } });
    const p = tracker.collect(state);
    expect([...p.changes.keys()]).toEqual(['default/good:http']);
    expect(p.problems.map((x) => x.object)).toEqual(['Service default/bad']);
  });
});

describe('sameServicePort', () => {
  const endpoint = { address: '198.19.0.1', family: 4 as const, port: 8080, ready: true, serving: true, terminating: false, nodeName: 'n1', zone: 'a', zoneHints: ['a'], nodeHints: ['n1'] };
  const base: ServicePort = {
    key: 'default/a:http', namespace: 'default', name: 'a', portName: 'http', protocol: 'TCP', port: 80, nodePort: 30080,
    clusterIPs: ['198.18.100.1'], externalIPs: ['198.18.200.1'], loadBalancerIPs: ['198.18.201.1'], externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster', sessionAffinity: { type: 'ClientIP', timeoutSeconds: 10 }, healthCheckNodePort: 30999,
    loadBalancerSourceRanges: ['198.18.0.0/16'], ipvsScheduler: 'rr', createdAt: '2026-01-01T00:00:00.000Z',
    endpointWeights: { addresses: new Map([['198.19.0.1', 2]]), nodes: new Map([['n1', 3]]), zones: new Map([['a', 4]]) },
    endpoints: [endpoint], allEndpoints: [endpoint],
  };

  /** Every leaf of a value (numbers, strings, booleans, Map values), each with a function making a copy with that leaf changed. */
  function mutations(v: unknown, path = ''): Array<[string, (x: unknown) => unknown]> {
    if (typeof v === 'number') return [[path, (x) => (x as number) + 1]];
    if (typeof v === 'string') return [[path, (x) => `${x as string}x`]];
    if (typeof v === 'boolean') return [[path, (x) => !(x as boolean)]];
    const out: Array<[string, (x: unknown) => unknown]> = [];
    if (v instanceof Map) {
      for (const [k, inner] of v) for (const [p, f] of mutations(inner, `${path}[${String(k)}]`)) out.push([p, (x) => new Map([...(x as Map<unknown, unknown>)].map(([kk, vv]) => [kk, kk === k ? f(vv) : vv]))]);
    } else if (Array.isArray(v)) {
      v.forEach((inner, i) => {
        for (const [p, f] of mutations(inner, `${path}[${i}]`)) out.push([p, (x) => (x as unknown[]).map((vv, j) => (j === i ? f(vv) : vv))]);
      });
    } else if (v && typeof v === 'object') {
      for (const [k, inner] of Object.entries(v)) for (const [p, f] of mutations(inner, `${path}.${k}`)) out.push([p, (x) => ({ ...(x as object), [k]: f((x as Record<string, unknown>)[k]) })]);
    }
    return out;
  }

  it('sees a change of any field of a Service port, endpoint weights (Maps) included', () => {
    const all = mutations(base);
    expect(all.length).toBeGreaterThan(35);
    expect(all.map(([p]) => p)).toContain('.endpointWeights.zones[a]');
    const unseen = all.filter(([, f]) => sameServicePort(base, f(base) as ServicePort)).map(([p]) => p);
    expect(unseen).toEqual([]);
    expect(sameServicePort(base, structuredClone(base))).toBe(true);
  });

  it('a change of the endpoint-weights annotation alone is a change (applied by a partial sync)', () => {
    const { state, tracker, addService, addSlice } = setup();
    const weighted = (w: string, rv: string): KubeService => ({ ...service('a'), metadata: { ...service('a', { rv }).metadata, annotations: { 'svcplane.io/endpoint-weights': w } } });
    addService(weighted('198.19.0.1=2', '1'));
    addSlice(slice('a-1', 'a', ['198.19.0.1', '198.19.0.2']));
    tracker.collect(state);
    addService(weighted('198.19.0.1=5', '2'));
    const p = tracker.collect(state);
    expect([...p.changes.keys()]).toEqual(['default/a:http']);
    expect(p.changes.get('default/a:http')!.endpointWeights!.addresses.get('198.19.0.1')).toBe(5);
  });
});
