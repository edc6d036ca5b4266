import { describe, it, expect } from 'vitest';
import { buildProxyModel, buildServicePorts, sliceServiceKey } from '../../src/model/build';
import { endpointsOf, parseEndpointSlice, SERVICE_NAME_LABEL } from '../../src/model/endpoints';
import type { Endpoint, KubeEndpointSlice, KubeService, ProxyModel, ServicePort } from '../../src/model/types';

type SliceEndpointIn = NonNullable<KubeEndpointSlice['endpoints']>[number];
type SlicePortIn = NonNullable<KubeEndpointSlice['ports']>[number];

function svc(name: string, ports: Array<{ name?: string; protocol?: string; port: number }> = [{ name: 'http', port: 80 }], clusterIPs = ['10.96.0.10']): KubeService {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { clusterIP: clusterIPs[0], clusterIPs, ports } };
}

function slice(
  name: string,
  service: string | undefined,
  endpoints: SliceEndpointIn[],
  ports: SlicePortIn[] = [{ name: 'http', protocol: 'TCP', port: 8080 }],
  addressType = 'IPv4',
): KubeEndpointSlice {
  const labels: Record<string, string> = service === undefined ? {} : { [SERVICE_NAME_LABEL]: service };
  return { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name, namespace: 'default', labels }, addressType, endpoints, ports };
}

function ep(address: string, conditions?: SliceEndpointIn['conditions'], extra: Partial<SliceEndpointIn> = {}): SliceEndpointIn {
  return conditions === undefined ? { addresses: [address], ...extra } : { addresses: [address], conditions, ...extra };
}

function port(model: ProxyModel, key: string): ServicePort {
  const p = model.servicePorts.get(key);
  if (!p) throw new Error(`no ServicePort ${key}; have ${[...model.servicePorts.keys()].join(', ')}`);
  return p;
}

const addrs = (eps: Endpoint[]): string[] => eps.map((e) => `${e.address}:${e.port}`);

describe('endpoint conditions', () => {
  it('reads absent ready and serving as true and absent terminating as false (as kube-proxy does)', () => {
    const m = buildProxyModel(
      [svc('web')],
      [slice('web-a', 'web', [ep('10.0.0.1'), ep('10.0.0.2', {}), ep('10.0.0.3', { ready: false }), ep('10.0.0.4', { ready: false, terminating: true })])],
    );
    expect(m.problems).toEqual([]);
    const all = port(m, 'default/web:http').allEndpoints;
    expect(all.map((e) => [e.address, e.ready, e.serving, e.terminating])).toEqual([
      ['10.0.0.1', true, true, false],
      ['10.0.0.2', true, true, false],
      ['10.0.0.3', false, true, false],
      ['10.0.0.4', false, true, true],
    ]);
  });

  it('rejects a non-boolean condition', () => {
    const r = parseEndpointSlice(slice('web-a', 'web', [ep('10.0.0.1', { ready: 'yes' as unknown as boolean }), ep('10.0.0.2')]));
    expect(r.problems).toEqual([{ object: 'EndpointSlice default/web-a', message: 'endpoints[0]: conditions.ready "yes" is not a boolean; endpoint skipped' }]);
    expect(r.slice?.endpoints.map((e) => e.address)).toEqual(['10.0.0.2']);
  });

  it('keeps nodeName and zone', () => {
    const m = buildProxyModel([svc('web')], [slice('web-a', 'web', [ep('10.0.0.1', undefined, { nodeName: 'node-1', zone: 'z1' }), ep('10.0.0.2')])]);
    const [a, b] = port(m, 'default/web:http').endpoints;
    expect(a).toEqual({ address: '10.0.0.1', family: 4, port: 8080, ready: true, serving: true, terminating: false, nodeName: 'node-1', zone: 'z1' });
    expect(b).toEqual({ address: '10.0.0.2', family: 4, port: 8080, ready: true, serving: true, terminating: false });
  });
});

describe("kube-proxy's choice of endpoints", () => {
  it('uses the ready endpoints when there are any', () => {
    const m = buildProxyModel(
      [svc('web')],
      [slice('web-a', 'web', [ep('10.0.0.1', { ready: true }), ep('10.0.0.2', { ready: false, serving: true, terminating: true }), ep('10.0.0.3', { ready: false })])],
    );
    const p = port(m, 'default/web:http');
    expect(addrs(p.endpoints)).toEqual(['10.0.0.1:8080']);
    expect(addrs(p.allEndpoints)).toEqual(['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  });

  it('falls back to serving terminating endpoints when none is ready', () => {
    const m = buildProxyModel(
      [svc('web')],
      [
        slice('web-a', 'web', [
          ep('10.0.0.1', { ready: false, serving: true, terminating: true }),
          ep('10.0.0.2', { ready: false, serving: false, terminating: true }),
          ep('10.0.0.3', { ready: false, serving: true, terminating: false }),
          ep('10.0.0.4', { ready: false }),
        ]),
      ],
    );
    expect(addrs(port(m, 'default/web:http').endpoints)).toEqual(['10.0.0.1:8080']);
  });

  it('has no endpoints when nothing is ready or serving-terminating', () => {
    const m = buildProxyModel([svc('web')], [slice('web-a', 'web', [ep('10.0.0.1', { ready: false }), ep('10.0.0.2', { ready: false, serving: false, terminating: true })])]);
    const p = port(m, 'default/web:http');
    expect(p.endpoints).toEqual([]);
    expect(p.allEndpoints).toHaveLength(2);
  });

  it('decides the fallback per IP family, as kube-proxy runs one proxier per family', () => {
    const s = svc('ds', [{ name: 'http', port: 80 }], ['10.96.0.10', 'fd00::a']);
    const m = buildProxyModel(
      [s],
      [
        slice('ds-v4', 'ds', [ep('10.0.0.1', { ready: true }), ep('10.0.0.2', { ready: false, serving: true, terminating: true })]),
        slice('ds-v6', 'ds', [ep('fd00::1', { ready: false, serving: true, terminating: true }), ep('fd00::2', { ready: false })], undefined, 'IPv6'),
      ],
    );
    expect(m.problems).toEqual([]);
    expect(addrs(port(m, 'default/ds:http').endpoints)).toEqual(['10.0.0.1:8080', 'fd00::1:8080']);
  });

  it('endpointsOf does the same from raw slices', () => {
    const r = endpointsOf([slice('web-a', 'web', [ep('10.0.0.2', { ready: false, serving: true, terminating: true }), ep('10.0.0.1', { ready: false })])], { portName: 'http', protocol: 'TCP' });
    expect(r.problems).toEqual([]);
    expect(addrs(r.chosen)).toEqual(['10.0.0.2:8080']);
    expect(addrs(r.all)).toEqual(['10.0.0.1:8080', '10.0.0.2:8080']);
  });
});

describe('merging slices', () => {
  it('lists an address:port found in several slices once, preferring the ready copy', () => {
    const m = buildProxyModel(
      [svc('web')],
      [
        slice('web-a', 'web', [ep('10.0.0.1', { ready: false, serving: true, terminating: true }), ep('10.0.0.2')]),
        slice('web-b', 'web', [ep('10.0.0.1', { ready: true }), ep('10.0.0.2'), ep('10.0.0.3')]),
      ],
    );
    expect(m.problems).toEqual([]);
    const p = port(m, 'default/web:http');
    expect(addrs(p.allEndpoints)).toEqual(['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
    expect(p.allEndpoints[0].ready).toBe(true);
    expect(addrs(p.endpoints)).toEqual(['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  });

  it('keeps the same address on different target ports apart', () => {
    const m = buildProxyModel(
      [svc('web')],
      [slice('web-a', 'web', [ep('10.0.0.1')], [{ name: 'http', port: 8080 }]), slice('web-b', 'web', [ep('10.0.0.1')], [{ name: 'http', port: 8081 }])],
    );
    expect(addrs(port(m, 'default/web:http').endpoints)).toEqual(['10.0.0.1:8080', '10.0.0.1:8081']);
  });

  it('sorts endpoints by family, then address numerically, then port, whatever the slice order', () => {
    const s = svc('ds', [{ name: 'http', port: 80 }], ['10.96.0.10', 'fd00::a']);
    const m = buildProxyModel(
      [s],
      [
        slice('ds-z', 'ds', [ep('FD00::0:10'), ep('fd00::9')], undefined, 'IPv6'),
        slice('ds-b', 'ds', [ep('10.0.0.10'), ep('10.0.0.9')]),
        slice('ds-a', 'ds', [ep('10.0.0.100'), ep('9.0.0.1')]),
      ],
    );
    expect(addrs(port(m, 'default/ds:http').endpoints)).toEqual(['9.0.0.1:8080', '10.0.0.9:8080', '10.0.0.10:8080', '10.0.0.100:8080', 'fd00::9:8080', 'fd00::10:8080']);
  });

  it('canonicalizes addresses before merging', () => {
    const m = buildProxyModel([svc('web')], [slice('web-a', 'web', [ep('010.000.000.001')]), slice('web-b', 'web', [ep('10.0.0.1')])]);
    expect(addrs(port(m, 'default/web:http').allEndpoints)).toEqual(['10.0.0.1:8080']);
  });
});

describe('ports', () => {
  it('matches Service ports to slice ports by name and protocol', () => {
    const s = svc('dns', [
      { name: 'dns', protocol: 'UDP', port: 53 },
      { name: 'dns-tcp', protocol: 'TCP', port: 53 },
      { name: 'metrics', port: 9153 },
    ]);
    const m = buildProxyModel(
      [s],
      [
        slice('dns-a', 'dns', [ep('10.0.0.1')], [
          { name: 'dns', protocol: 'UDP', port: 5353 },
          { name: 'dns-tcp', protocol: 'TCP', port: 5354 },
          // Same name, other protocol: must not be taken for "metrics"/TCP.
          { name: 'metrics', protocol: 'UDP', port: 1 },
          { name: 'metrics', port: 9154 },
          // No Service port of this name.
          { name: 'other', port: 7 },
        ]),
      ],
    );
    expect(m.problems).toEqual([]);
    expect(addrs(port(m, 'default/dns:dns').endpoints)).toEqual(['10.0.0.1:5353']);
    expect(addrs(port(m, 'default/dns:dns-tcp').endpoints)).toEqual(['10.0.0.1:5354']);
    expect(addrs(port(m, 'default/dns:metrics').endpoints)).toEqual(['10.0.0.1:9154']);
  });

  it('matches an unnamed Service port to the unnamed slice port', () => {
    const m = buildProxyModel([svc('one', [{ port: 80 }])], [slice('one-a', 'one', [ep('10.0.0.1')], [{ port: 8080 }])]);
    expect(addrs(port(m, 'default/one:').endpoints)).toEqual(['10.0.0.1:8080']);
  });

  it('finds no endpoints when no slice port has the name', () => {
    const m = buildProxyModel([svc('web')], [slice('web-a', 'web', [ep('10.0.0.1')], [{ name: 'https', port: 8443 }])]);
    expect(m.problems).toEqual([]);
    expect(port(m, 'default/web:http').allEndpoints).toEqual([]);
  });

  it('skips a bad slice port with a problem and keeps the others', () => {
    const m = buildProxyModel(
      [svc('web', [{ name: 'http', port: 80 }, { name: 'https', port: 443 }])],
      [slice('web-a', 'web', [ep('10.0.0.1')], [{ name: 'http', port: 0 }, { name: 'https', port: 8443 }])],
    );
    expect(m.problems).toEqual([{ object: 'EndpointSlice default/web-a', message: 'ports[0]: port 0 is not in 1..65535; port skipped' }]);
    expect(port(m, 'default/web:http').allEndpoints).toEqual([]);
    expect(addrs(port(m, 'default/web:https').endpoints)).toEqual(['10.0.0.1:8443']);
  });

  it('reports a slice problem once, however many Service ports there are', () => {
    const m = buildProxyModel(
      [svc('web', [{ name: 'http', port: 80 }, { name: 'https', port: 443 }])],
      [slice('web-a', 'web', [ep('nope'), ep('10.0.0.1')], [{ name: 'http', port: 8080 }, { name: 'https', port: 8443 }])],
    );
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0]).toEqual({ object: 'EndpointSlice default/web-a', message: 'endpoints[0]: address "nope" is not a valid IP address; endpoint skipped' });
  });

  it('skips an endpoint whose address is loopback or otherwise special (the API server refuses it)', () => {
    const m = buildProxyModel([svc('web', [{ name: 'http', port: 80 }])], [slice('web-a', 'web', [ep('127.0.0.1'), ep('10.0.0.1')], [{ name: 'http', port: 8080 }])]);
    expect(m.problems).toEqual([{ object: 'EndpointSlice default/web-a', message: 'endpoints[0]: address "127.0.0.1" is a loopback address (127.0.0.0/8), which cannot be an endpoint\'s (the API server refuses it); endpoint skipped' }]);
    expect(addrs(port(m, 'default/web:http').endpoints)).toEqual(['10.0.0.1:8080']);
  });

  it('skips a duplicate slice port name/protocol', () => {
    const r = parseEndpointSlice(slice('web-a', 'web', [ep('10.0.0.1')], [{ name: 'http', port: 8080 }, { name: 'http', port: 8081 }]));
    expect(r.problems).toEqual([{ object: 'EndpointSlice default/web-a', message: 'ports[1]: duplicate port name "http" for TCP; port skipped' }]);
    expect(r.slice?.ports).toEqual([{ name: 'http', protocol: 'TCP', port: 8080 }]);
  });
});

describe('bad endpoints', () => {
  it('skips an address of the wrong family with a problem naming the slice', () => {
    const m = buildProxyModel([svc('web'), svc('other')], [slice('web-a', 'web', [ep('fd00::1'), ep('10.0.0.1')])]);
    expect(m.problems).toEqual([{ object: 'EndpointSlice default/web-a', message: 'endpoints[0]: address "fd00::1" is not IPv4 as the slice\'s addressType says; endpoint skipped' }]);
    expect(addrs(port(m, 'default/web:http').endpoints)).toEqual(['10.0.0.1:8080']);
    expect(m.servicePorts.has('default/other:http')).toBe(true);
  });

  it('takes an IPv4-mapped IPv6 address as IPv4, so it does not fit an IPv6 slice', () => {
    const r = parseEndpointSlice(slice('v6', 'web', [ep('::ffff:10.0.0.1'), ep('fd00::1')], undefined, 'IPv6'));
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].message).toMatch(/is not IPv6/);
  });

  it('skips endpoints without addresses', () => {
    const r = parseEndpointSlice(slice('web-a', 'web', [{ addresses: [] }, { conditions: { ready: true } }, ep('10.0.0.1')]));
    expect(r.problems.map((p) => p.message)).toEqual(['endpoints[0]: no addresses; endpoint skipped', 'endpoints[1]: no addresses; endpoint skipped']);
    expect(r.slice?.endpoints).toHaveLength(1);
  });

  it('uses the first address of an endpoint', () => {
    const r = parseEndpointSlice(slice('web-a', 'web', [{ addresses: ['10.0.0.1', '10.0.0.2'] }]));
    expect(r.slice?.endpoints.map((e) => e.address)).toEqual(['10.0.0.1']);
  });
});

describe('slices that are not used', () => {
  it('reports a slice without the service-name label, by name', () => {
    const m = buildProxyModel([svc('web')], [slice('stray', undefined, [ep('10.0.0.1')])]);
    expect(m.problems).toEqual([{ object: 'EndpointSlice default/stray', message: `no ${SERVICE_NAME_LABEL} label; EndpointSlice ignored` }]);
    expect(port(m, 'default/web:http').allEndpoints).toEqual([]);
  });

  it('reports a slice whose Service does not exist', () => {
    const m = buildProxyModel([svc('web')], [slice('gone-abc', 'gone', [ep('10.0.0.1')])]);
    expect(m.problems).toEqual([{ object: 'EndpointSlice default/gone-abc', message: 'no Service default/gone; EndpointSlice ignored' }]);
  });

  it('does not match a Service of another namespace', () => {
    const s = slice('web-a', 'web', [ep('10.0.0.1')]);
    s.metadata = { ...s.metadata, namespace: 'other' };
    const m = buildProxyModel([svc('web')], [s]);
    expect(m.problems).toEqual([{ object: 'EndpointSlice other/web-a', message: 'no Service other/web; EndpointSlice ignored' }]);
  });

  it('reports an invalid service-name label', () => {
    const m = buildProxyModel([svc('web')], [slice('x', 'Not_A_Name', [ep('10.0.0.1')])]);
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0].object).toBe('EndpointSlice default/x');
    expect(m.problems[0].message).toMatch(/label "Not_A_Name" is not a valid Service name/);
  });

  it('ignores FQDN slices silently', () => {
    const m = buildProxyModel([svc('web')], [slice('web-fqdn', 'web', [ep('example.com')], undefined, 'FQDN'), slice('orphan-fqdn', undefined, [], undefined, 'FQDN')]);
    expect(m.problems).toEqual([]);
    expect(port(m, 'default/web:http').allEndpoints).toEqual([]);
    expect(parseEndpointSlice(slice('x', 'web', [], undefined, 'FQDN'))).toEqual({ problems: [] });
  });

  it('ignores a slice with an unknown addressType with one problem', () => {
    const m = buildProxyModel([svc('web')], [slice('web-a', 'web', [ep('10.0.0.1')], undefined, 'IPv5')]);
    expect(m.problems).toEqual([{ object: 'EndpointSlice default/web-a', message: 'addressType "IPv5" is not IPv4, IPv6 or FQDN; EndpointSlice ignored' }]);
  });

  it('reports a slice defined twice and keeps the first', () => {
    const m = buildProxyModel([svc('web')], [slice('web-a', 'web', [ep('10.0.0.1')]), slice('web-a', 'web', [ep('10.0.0.2')])]);
    expect(m.problems).toEqual([{ object: 'EndpointSlice default/web-a', message: expect.stringMatching(/more than once/) }]);
    expect(addrs(port(m, 'default/web:http').endpoints)).toEqual(['10.0.0.1:8080']);
  });

  it('names the slice key of the Service it belongs to', () => {
    expect(sliceServiceKey(slice('web-a', 'web', []))).toBe('default/web');
    expect(sliceServiceKey(slice('web-a', undefined, []))).toBeUndefined();
  });

  it('buildServicePorts ignores slices of other Services', () => {
    const r = buildServicePorts(svc('web'), [slice('web-a', 'web', [ep('10.0.0.1')]), slice('api-a', 'api', [ep('10.0.0.2')])]);
    expect(r.problems).toEqual([]);
    expect(addrs(r.ports[0].endpoints)).toEqual(['10.0.0.1:8080']);
  });
});
