// chooseEndpoints (src/model/topology.ts) against kube-proxy's CategorizeEndpoints rules, case by case.
import { describe, expect, it } from 'vitest';
import { chooseEndpoints, topologyMode } from '../../src/model/topology';
import type { Endpoint, ServicePort } from '../../src/model/types';

const ep = (address: string, o: Partial<Endpoint> = {}): Endpoint => ({ address, family: 4, port: 8080, ready: true, serving: true, terminating: false, ...o });
const sp = (all: Endpoint[], o: Partial<ServicePort> = {}): ServicePort => ({
  key: 'ns/s:p', namespace: 'ns', name: 's', portName: 'p', protocol: 'TCP', port: 80, nodePort: 0, clusterIPs: ['10.0.0.1'], externalIPs: [], loadBalancerIPs: [],
  externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', sessionAffinity: { type: 'None' }, healthCheckNodePort: 0, loadBalancerSourceRanges: [],
  endpoints: all, allEndpoints: all, ...o,
});
const node = { name: 'n1', zone: 'z1' };
const addrs = (l: Endpoint[]) => l.map((e) => e.address);

describe('chooseEndpoints (kube-proxy CategorizeEndpoints)', () => {
  it('ready endpoints; with none ready, the serving-terminating ones; never the not-serving', () => {
    const c = chooseEndpoints(sp([ep('a'), ep('b', { ready: false, terminating: true }), ep('c', { ready: false, serving: false, terminating: true })]), 4, node);
    expect(addrs(c.cluster)).toEqual(['a']);
    const t = chooseEndpoints(sp([ep('b', { ready: false, terminating: true }), ep('c', { ready: false, serving: false, terminating: true })]), 4, node);
    expect(addrs(t.cluster)).toEqual(['b']);
    expect(t.hasAny).toBe(true);
    expect(chooseEndpoints(sp([ep('c', { ready: false, serving: false })]), 4, node).hasAny).toBe(false);
  });

  it('zone hints only when every ready endpoint has one and one is for this zone; node hints first', () => {
    const z = [ep('a', { zoneHints: ['z1'] }), ep('b', { zoneHints: ['z2'] })];
    expect(topologyMode(z, node)).toBe('PreferSameZone');
    expect(addrs(chooseEndpoints(sp(z), 4, node).cluster)).toEqual(['a']);
    expect(topologyMode([...z, ep('c')], node)).toBe(''); // one without hints
    expect(topologyMode(z, { name: 'n1', zone: 'z9' })).toBe(''); // none for this zone
    expect(topologyMode(z, { name: 'n1' })).toBe(''); // zone unknown
    // A not-ready endpoint without hints does not count.
    expect(topologyMode([...z, ep('d', { ready: false })].filter((e) => e.ready), node)).toBe('PreferSameZone');
    const n = [ep('a', { nodeHints: ['n2'], zoneHints: ['z1'] }), ep('b', { nodeHints: ['n1'], zoneHints: ['z1'] })];
    expect(addrs(chooseEndpoints(sp(n), 4, node).cluster)).toEqual(['b']);
    // Node hints for other nodes only: zone hints still apply.
    expect(topologyMode(n, { name: 'n3', zone: 'z1' })).toBe('PreferSameZone');
  });

  it('topology is ignored by the serving-terminating fallback and by the Local policies', () => {
    const c = chooseEndpoints(sp([ep('a', { ready: false, terminating: true, zoneHints: ['z2'] })]), 4, node);
    expect(addrs(c.cluster)).toEqual(['a']);
    const l = chooseEndpoints(sp([ep('a', { nodeName: 'n1', zoneHints: ['z2'] }), ep('b', { zoneHints: ['z1'] })], { internalTrafficPolicy: 'Local' }), 4, node);
    expect(addrs(l.internal)).toEqual(['a']);
    expect(addrs(l.cluster)).toEqual(['b']);
  });

  it('Local policies: this node\'s ready endpoints, else its serving-terminating ones; externalTrafficPolicy only for reachable ports', () => {
    const all = [ep('a', { nodeName: 'n1', ready: false, terminating: true }), ep('b', { nodeName: 'n2' })];
    const i = chooseEndpoints(sp(all, { internalTrafficPolicy: 'Local' }), 4, node);
    expect(addrs(i.internal)).toEqual(['a']);
    const x = chooseEndpoints(sp(all, { externalTrafficPolicy: 'Local', nodePort: 30000 }), 4, node);
    expect(x.externalLocal).toBe(true);
    expect(addrs(x.external)).toEqual(['a']);
    expect(addrs(x.internal)).toEqual(['b']);
    // No NodePort, externalIP or LB IP: nothing external, the Local policy means nothing (kube-proxy).
    expect(chooseEndpoints(sp(all, { externalTrafficPolicy: 'Local' }), 4, node).externalLocal).toBe(false);
    // Without a node name nothing is local.
    expect(chooseEndpoints(sp(all, { internalTrafficPolicy: 'Local' }), 4, {}).internal).toEqual([]);
  });
});
