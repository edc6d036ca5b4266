import { describe, it, expect } from 'vitest';
import { buildProxyModel } from '../../src/model/build';
import { DEFAULT_CLIENT_IP_TIMEOUT, serviceKeyOf, servicePortKey, servicePortsOf } from '../../src/model/service';
import type { KubeEndpointSlice, KubeService, ProxyModel, ServicePort } from '../../src/model/types';

type Spec = NonNullable<KubeService['spec']>;

/** A valid ClusterIP Service; OVERRIDES replace spec fields (undefined deletes one). */
function svc(name: string, overrides: Record<string, unknown> = {}, extra: Partial<KubeService> = {}): KubeService {
  const spec: Record<string, unknown> = {
    type: 'ClusterIP',
    clusterIP: '10.96.0.10',
    clusterIPs: ['10.96.0.10'],
    ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }],
  };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete spec[k];
    else spec[k] = v;
  }
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: spec as Spec, ...extra };
}

/** Casts deliberately malformed input to the input type (the model must cope with anything). */
function bogus<T>(x: unknown): T {
  return x as T;
}

function port(model: ProxyModel, key: string): ServicePort {
  const p = model.servicePorts.get(key);
  if (!p) throw new Error(`no ServicePort ${key}; have ${[...model.servicePorts.keys()].join(', ')}`);
  return p;
}

const good = svc('good');

describe('Service basics', () => {
  it('builds one ServicePort per port with kube-proxy names and defaults', () => {
    const m = buildProxyModel([svc('web', { ports: [{ name: 'http', port: 80 }, { name: 'dns', protocol: 'UDP', port: 53 }] })], []);
    expect(m.problems).toEqual([]);
    expect([...m.servicePorts.keys()]).toEqual(['default/web:dns', 'default/web:http']);
    const http = port(m, 'default/web:http');
    expect(http).toMatchObject({
      namespace: 'default',
      name: 'web',
      portName: 'http',
      protocol: 'TCP', // default
      port: 80,
      nodePort: 0,
      clusterIPs: ['10.96.0.10'],
      externalIPs: [],
      loadBalancerIPs: [],
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Cluster',
      sessionAffinity: { type: 'None' },
      healthCheckNodePort: 0,
      loadBalancerSourceRanges: [],
      endpoints: [],
      allEndpoints: [],
    });
    expect(port(m, 'default/web:dns').protocol).toBe('UDP');
  });

  it('keys an unnamed single port "ns/name:"', () => {
    const m = buildProxyModel([svc('one', { ports: [{ port: 443 }] })], []);
    expect([...m.servicePorts.keys()]).toEqual(['default/one:']);
    expect(servicePortKey('kube-system', 'dns', '')).toBe('kube-system/dns:');
  });

  it('defaults an absent or empty namespace to "default"', () => {
    const a = svc('a');
    a.metadata = { name: 'a' };
    const b = svc('b');
    b.metadata = { name: 'b', namespace: '' };
    expect(serviceKeyOf(a)).toBe('default/a');
    const m = buildProxyModel([a, b], []);
    expect([...m.servicePorts.keys()]).toEqual(['default/a:http', 'default/b:http']);
  });

  it('falls back to spec.clusterIP and canonicalizes it', () => {
    const m = buildProxyModel([svc('v6', { clusterIPs: undefined, clusterIP: 'FD00:0:0:0::A' })], []);
    expect(m.problems).toEqual([]);
    expect(port(m, 'default/v6:http').clusterIPs).toEqual(['fd00::a']);
  });

  it('orders the model by ServicePort key', () => {
    const m = buildProxyModel([svc('b'), svc('a'), { ...svc('c'), metadata: { name: 'c', namespace: 'aaa' } }], []);
    expect([...m.servicePorts.keys()]).toEqual(['aaa/c:http', 'default/a:http', 'default/b:http']);
  });
});

describe('malformed Services: exactly one problem naming the Service, the others still proxied', () => {
  const cases: Array<[string, KubeService, string, RegExp]> = [
    ['unknown type', svc('bad', { type: 'Magic' }), 'Service default/bad', /spec\.type "Magic"/],
    ['no cluster IP', svc('bad', { clusterIP: undefined, clusterIPs: undefined }), 'Service default/bad', /no cluster IP/],
    ['invalid cluster IP', svc('bad', { clusterIP: '10.96.0.300', clusterIPs: undefined }), 'Service default/bad', /spec\.clusterIP "10\.96\.0\.300" is not a valid IP/],
    ['invalid clusterIPs entry', svc('bad', { clusterIP: undefined, clusterIPs: ['10.96.0.1', 'x'] }), 'Service default/bad', /spec\.clusterIPs\[1\] "x"/],
    ['two cluster IPs of one family', svc('bad', { clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.1', '10.96.0.2'] }), 'Service default/bad', /two IPv4/],
    ['three cluster IPs', svc('bad', { clusterIP: undefined, clusterIPs: ['10.96.0.1', 'fd00::1', '10.96.0.2'] }), 'Service default/bad', /3 addresses/],
    ['clusterIP differs from clusterIPs[0]', svc('bad', { clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.2'] }), 'Service default/bad', /differs from spec\.clusterIPs\[0\]/],
    ['clusterIPs not a list', svc('bad', { clusterIPs: '10.96.0.10' }), 'Service default/bad', /spec\.clusterIPs is not a list/],
    ['no ports', svc('bad', { ports: undefined }), 'Service default/bad', /no ports/],
    ['empty ports', svc('bad', { ports: [] }), 'Service default/bad', /no ports/],
    ['ports not a list', svc('bad', { ports: { port: 80 } }), 'Service default/bad', /spec\.ports is not a list/],
    ['no valid port', svc('bad', { ports: [{ name: 'a', port: 0 }, { name: 'b', port: 70000 }] }), 'Service default/bad', /no valid port: spec\.ports\[0\] \("a"\): port 0 .*spec\.ports\[1\] \("b"\): port 70000/],
    ['unknown session affinity', svc('bad', { sessionAffinity: 'Cookie' }), 'Service default/bad', /spec\.sessionAffinity "Cookie"/],
    ['session affinity timeout out of range', svc('bad', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } }), 'Service default/bad', /timeoutSeconds 0 is not in 1\.\.86400/],
    ['unknown externalTrafficPolicy', svc('bad', { type: 'NodePort', externalTrafficPolicy: 'Global' }), 'Service default/bad', /spec\.externalTrafficPolicy "Global"/],
    ['unknown internalTrafficPolicy', svc('bad', { internalTrafficPolicy: 'local' }), 'Service default/bad', /spec\.internalTrafficPolicy "local"/],
    ['externalIPs not a list', svc('bad', { externalIPs: '1.2.3.4' }), 'Service default/bad', /spec\.externalIPs is not a list/],
    ['every source range invalid', svc('bad', { type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/40', 'nope'] }), 'Service default/bad', /refusing to allow every source/],
    ['spec not an object', { ...svc('bad'), spec: bogus<Spec>('ClusterIP') }, 'Service default/bad', /spec is not an object/],
    ['invalid name', svc('Bad_Name'), 'Service default/Bad_Name', /metadata\.name "Bad_Name" is not a valid name/],
    ['no name', { ...svc('x'), metadata: { namespace: 'default' } }, 'Service default/<no name>', /no metadata\.name/],
    ['invalid namespace', { ...svc('bad'), metadata: { name: 'bad', namespace: 'Kube System' } }, 'Service Kube System/bad', /metadata\.namespace "Kube System"/],
    ['not an object', bogus<KubeService>('a string'), 'Service default/<no name>', /not an object/],
    // What the API server refuses as a Service address (ValidateNonSpecialIP), and what no connection can reach.
    ['loopback cluster IP', svc('bad', { clusterIP: '127.0.0.1', clusterIPs: undefined }), 'Service default/bad', /spec\.clusterIP "127\.0\.0\.1" is a loopback address \(127\.0\.0\.0\/8\), which cannot be a Service's/],
    ['unspecified cluster IP', svc('bad', { clusterIP: '0.0.0.0', clusterIPs: undefined }), 'Service default/bad', /"0\.0\.0\.0" is the unspecified address/],
    ['unspecified IPv6 cluster IP', svc('bad', { clusterIP: '::', clusterIPs: ['::'] }), 'Service default/bad', /spec\.clusterIPs\[0\] "::" is the unspecified address/],
    ['IPv6 loopback cluster IP', svc('bad', { clusterIP: '::1', clusterIPs: ['::1'] }), 'Service default/bad', /"::1" is the loopback address/],
    ['multicast cluster IP', svc('bad', { clusterIP: '224.0.0.1', clusterIPs: undefined }), 'Service default/bad', /"224\.0\.0\.1" is a multicast address/],
    ['IPv6 multicast cluster IP', svc('bad', { clusterIP: 'ff02::1', clusterIPs: ['ff02::1'] }), 'Service default/bad', /"ff02::1" is a multicast address \(ff00::\/8\)/],
    ['broadcast cluster IP', svc('bad', { clusterIP: '255.255.255.255', clusterIPs: undefined }), 'Service default/bad', /"255\.255\.255\.255" is the broadcast address/],
    ['link-local cluster IP', svc('bad', { clusterIP: '169.254.169.254', clusterIPs: undefined }), 'Service default/bad', /is a link-local address \(169\.254\.0\.0\/16\)/],
    ['IPv4-mapped loopback cluster IP', svc('bad', { clusterIP: '::ffff:127.0.0.1', clusterIPs: undefined }), 'Service default/bad', /is a loopback address/],
  ];

  it.each(cases)('%s', (_what, bad, object, message) => {
    const m = buildProxyModel([svc('first'), bad, svc('last')], []);
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0].object).toBe(object);
    expect(m.problems[0].message).toMatch(message);
    expect(m.problems[0].message).toMatch(/Service skipped$/);
    expect([...m.servicePorts.keys()]).toEqual(['default/first:http', 'default/last:http']);
    // servicePortsOf says why, too.
    const r = servicePortsOf(bad);
    expect(r.ports).toEqual([]);
    expect(r.skipped).toBeDefined();
  });

  it('drops the warnings about parts of a Service that is skipped anyway', () => {
    const bad = svc('bad', { externalIPs: ['nope'], ports: [{ name: 'a', port: 0 }] });
    const m = buildProxyModel([bad, good], []);
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0]).toMatchObject({ object: 'Service default/bad' });
    expect(m.problems[0].message).toMatch(/no valid port/);
  });

  it('reports a Service defined twice once, and keeps the first', () => {
    const m = buildProxyModel([svc('dup', { clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.1'] }), svc('dup', { clusterIP: '10.96.0.2', clusterIPs: ['10.96.0.2'] })], []);
    expect(m.problems).toEqual([{ object: 'Service default/dup', message: expect.stringMatching(/more than once/) }]);
    expect(port(m, 'default/dup:http').clusterIPs).toEqual(['10.96.0.1']);
  });
});

describe('Services that are not proxied, silently', () => {
  it.each([
    ['headless (clusterIP None)', svc('hl', { clusterIP: 'None', clusterIPs: ['None'] })],
    ['headless (clusterIP None only)', svc('hl', { clusterIP: 'None', clusterIPs: undefined })],
    ['ExternalName', svc('ext', { type: 'ExternalName', externalName: 'example.com', clusterIP: undefined, clusterIPs: undefined, ports: undefined })],
    ['ExternalName with a cluster IP', svc('ext', { type: 'ExternalName', externalName: 'example.com' })],
  ])('%s', (_what, s) => {
    const slice: KubeEndpointSlice = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${s.metadata?.name}-abc`, namespace: 'default', labels: { 'kubernetes.io/service-name': s.metadata?.name ?? '' } },
      addressType: 'IPv4',
      // Even a malformed slice of such a Service is never looked at.
      endpoints: [{ addresses: ['not-an-ip'] }],
      ports: [{ name: 'http', port: 8080 }],
    };
    const m = buildProxyModel([s, good], [slice]);
    expect(m.problems).toEqual([]);
    expect([...m.servicePorts.keys()]).toEqual(['default/good:http']);
    const r = servicePortsOf(s);
    expect(r.ports).toEqual([]);
    expect(r.problems).toEqual([]);
    expect(r.skipped).toMatch(/headless|ExternalName/);
  });
});

describe('dual stack', () => {
  it('keeps one cluster IP per family, and external and load-balancer IPs of both', () => {
    const s = svc(
      'ds',
      {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.10',
        clusterIPs: ['10.96.0.10', 'fd00:10:96::a'],
        ipFamilies: ['IPv4', 'IPv6'],
        externalIPs: ['192.0.2.1', '2001:db8::1'],
        ports: [{ name: 'http', port: 80, nodePort: 30080 }],
      },
      { status: { loadBalancer: { ingress: [{ ip: '198.51.100.1' }, { ip: '2001:db8:1::1' }] } } },
    );
    const m = buildProxyModel([s], []);
    expect(m.problems).toEqual([]);
    const p = port(m, 'default/ds:http');
    expect(p.clusterIPs).toEqual(['10.96.0.10', 'fd00:10:96::a']);
    expect(p.externalIPs).toEqual(['192.0.2.1', '2001:db8::1']);
    expect(p.loadBalancerIPs).toEqual(['198.51.100.1', '2001:db8:1::1']);
    expect(p.nodePort).toBe(30080);
  });

  it('accepts IPv6 first', () => {
    const m = buildProxyModel([svc('v6first', { clusterIP: 'fd00::a', clusterIPs: ['fd00::a', '10.96.0.10'] })], []);
    expect(m.problems).toEqual([]);
    expect(port(m, 'default/v6first:http').clusterIPs).toEqual(['fd00::a', '10.96.0.10']);
  });

  it('drops addresses of a family the Service has no cluster IP of, without a problem (as kube-proxy)', () => {
    const s = svc('v4only', { type: 'LoadBalancer', externalIPs: ['192.0.2.1', '2001:db8::1'] }, {
      status: { loadBalancer: { ingress: [{ ip: '2001:db8:1::1' }, { ip: '198.51.100.1' }] } },
    });
    const m = buildProxyModel([s], []);
    expect(m.problems).toEqual([]);
    const p = port(m, 'default/v4only:http');
    expect(p.externalIPs).toEqual(['192.0.2.1']);
    expect(p.loadBalancerIPs).toEqual(['198.51.100.1']);
  });
});

describe('externalIPs', () => {
  it('drops an invalid address with a problem and keeps the others, canonical and deduplicated', () => {
    const m = buildProxyModel([svc('ext', { externalIPs: ['192.0.2.1', '192.0.2.999', '192.000.002.001', '192.0.2.2'] }), good], []);
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0].object).toBe('Service default/ext');
    expect(m.problems[0].message).toMatch(/spec\.externalIPs\[1\] "192\.0\.2\.999" is not a valid IP address; ignored/);
    expect(port(m, 'default/ext:http').externalIPs).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(m.servicePorts.has('default/good:http')).toBe(true);
  });

  it('drops a loopback, unspecified, multicast, broadcast or link-local external IP with a problem', () => {
    const m = buildProxyModel([svc('ext', { externalIPs: ['127.0.0.53', '0.0.0.0', '224.0.0.1', '255.255.255.255', '169.254.1.1', '192.0.2.1'] })], []);
    expect(m.problems.map((p) => p.message)).toEqual([
      'spec.externalIPs[0] "127.0.0.53" is a loopback address (127.0.0.0/8), which cannot be a Service\'s (the API server refuses it); ignored',
      'spec.externalIPs[1] "0.0.0.0" is the unspecified address, which cannot be a Service\'s (the API server refuses it); ignored',
      'spec.externalIPs[2] "224.0.0.1" is a multicast address (224.0.0.0/4), which cannot be a Service\'s (the API server refuses it); ignored',
      'spec.externalIPs[3] "255.255.255.255" is the broadcast address, which cannot be a Service\'s (the API server refuses it); ignored',
      'spec.externalIPs[4] "169.254.1.1" is a link-local address (169.254.0.0/16), which cannot be a Service\'s (the API server refuses it); ignored',
    ]);
    expect(port(m, 'default/ext:http').externalIPs).toEqual(['192.0.2.1']);
  });

  it('makes externalTrafficPolicy Local meaningful on a ClusterIP Service only with external IPs', () => {
    const m = buildProxyModel(
      [svc('with', { externalIPs: ['192.0.2.1'], externalTrafficPolicy: 'Local' }), svc('without', { externalTrafficPolicy: 'Local' })],
      [],
    );
    expect(port(m, 'default/with:http').externalTrafficPolicy).toBe('Local');
    expect(port(m, 'default/without:http').externalTrafficPolicy).toBe('Cluster');
  });
});

describe('load balancers', () => {
  const ingress = [
    { ip: '198.51.100.1' },
    { ip: '198.51.100.2', ipMode: 'VIP' },
    { ip: '198.51.100.3', ipMode: 'Proxy' },
    { hostname: 'lb.example.com' },
    { ip: '198.51.100.1' },
  ];

  it('takes ingress IPs except ipMode Proxy and hostname-only entries', () => {
    const m = buildProxyModel([svc('lb', { type: 'LoadBalancer' }, { status: { loadBalancer: { ingress } } })], []);
    expect(m.problems).toEqual([]);
    expect(port(m, 'default/lb:http').loadBalancerIPs).toEqual(['198.51.100.1', '198.51.100.2']);
  });

  it('ignores load-balancer status on a Service that is not type LoadBalancer', () => {
    for (const type of ['ClusterIP', 'NodePort']) {
      const m = buildProxyModel([svc('lb', { type }, { status: { loadBalancer: { ingress } } })], []);
      expect(port(m, 'default/lb:http').loadBalancerIPs).toEqual([]);
    }
  });

  it('drops a loopback ingress IP with a problem and keeps the Service', () => {
    const m = buildProxyModel([svc('lb', { type: 'LoadBalancer' }, { status: { loadBalancer: { ingress: [{ ip: '127.0.0.1' }, { ip: '192.0.2.9' }] } } })], []);
    expect(m.problems.map((p) => p.message)).toEqual(['status.loadBalancer.ingress ip "127.0.0.1" is a loopback address (127.0.0.0/8), which cannot be a load balancer\'s; ignored']);
    expect(port(m, 'default/lb:http').loadBalancerIPs).toEqual(['192.0.2.9']);
  });

  it('warns about an invalid ingress IP and keeps the Service', () => {
    const m = buildProxyModel([svc('lb', { type: 'LoadBalancer' }, { status: { loadBalancer: { ingress: [{ ip: 'bogus' }, { ip: '198.51.100.1' }] } } })], []);
    expect(m.problems).toEqual([{ object: 'Service default/lb', message: expect.stringMatching(/ingress ip "bogus" is not a valid IP address; ignored/) }]);
    expect(port(m, 'default/lb:http').loadBalancerIPs).toEqual(['198.51.100.1']);
  });

  it('keeps valid source ranges (canonical) and warns about invalid ones', () => {
    const m = buildProxyModel([svc('lb', { type: 'LoadBalancer', loadBalancerSourceRanges: [' 10.1.2.3/8 ', 'bad', '2001:DB8::/32'] })], []);
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0].message).toMatch(/spec\.loadBalancerSourceRanges\[1\] "bad" is not a valid CIDR; ignored/);
    expect(port(m, 'default/lb:http').loadBalancerSourceRanges).toEqual(['10.0.0.0/8', '2001:db8::/32']);
  });

  it('serves health checks only for LoadBalancer Services with externalTrafficPolicy Local', () => {
    const m = buildProxyModel(
      [
        svc('local', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 }),
        svc('cluster', { type: 'LoadBalancer', healthCheckNodePort: 32001 }),
        svc('np', { type: 'NodePort', externalTrafficPolicy: 'Local', healthCheckNodePort: 32002 }),
      ],
      [],
    );
    expect(m.problems).toEqual([]);
    expect(port(m, 'default/local:http').healthCheckNodePort).toBe(32000);
    expect(port(m, 'default/local:http').externalTrafficPolicy).toBe('Local');
    expect(port(m, 'default/cluster:http').healthCheckNodePort).toBe(0);
    expect(port(m, 'default/np:http').healthCheckNodePort).toBe(0);
    expect(port(m, 'default/np:http').externalTrafficPolicy).toBe('Local');
  });

  it('warns when a Local LoadBalancer has no health-check node port', () => {
    const m = buildProxyModel([svc('local', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' })], []);
    expect(m.problems).toEqual([{ object: 'Service default/local', message: expect.stringMatching(/no spec\.healthCheckNodePort/) }]);
    expect(port(m, 'default/local:http').healthCheckNodePort).toBe(0);
  });
});

describe('ports', () => {
  it('skips a bad port with a problem and keeps the others', () => {
    const m = buildProxyModel(
      [svc('web', { ports: [{ name: 'http', port: 80 }, { name: 'bad', port: 'eighty' }, { name: 'quic', protocol: 'QUIC', port: 443 }, { name: 'https', port: 443 }] }), good],
      [],
    );
    expect(m.problems).toEqual([
      { object: 'Service default/web', message: 'spec.ports[1] ("bad"): port "eighty" is not in 1..65535; port skipped' },
      { object: 'Service default/web', message: 'spec.ports[2] ("quic"): protocol "QUIC" is not TCP, UDP or SCTP; port skipped' },
    ]);
    expect([...m.servicePorts.keys()]).toEqual(['default/good:http', 'default/web:http', 'default/web:https']);
  });

  it('skips an invalid port name', () => {
    const m = buildProxyModel([svc('web', { ports: [{ name: 'http', port: 80 }, { name: 'Web_UI', port: 81 }] })], []);
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0].message).toMatch(/name "Web_UI" is not a valid port name/);
    expect([...m.servicePorts.keys()]).toEqual(['default/web:http']);
  });

  it('skips a duplicate port name (the ServicePort key would collide)', () => {
    const m = buildProxyModel([svc('dup', { ports: [{ name: 'http', port: 80 }, { name: 'http', port: 81 }] })], []);
    expect(m.problems).toEqual([{ object: 'Service default/dup', message: expect.stringMatching(/spec\.ports\[1\] \("http"\): duplicate port name "http".*port skipped/) }]);
    expect(port(m, 'default/dup:http').port).toBe(80);
  });

  it('skips a duplicate port/protocol but allows the same number on another protocol', () => {
    const m = buildProxyModel(
      [svc('dns', { ports: [{ name: 'dns', protocol: 'UDP', port: 53 }, { name: 'dns-tcp', protocol: 'TCP', port: 53 }, { name: 'again', protocol: 'UDP', port: 53 }] })],
      [],
    );
    expect(m.problems).toEqual([{ object: 'Service default/dns', message: expect.stringMatching(/spec\.ports\[2\] \("again"\): duplicate port 53\/UDP/) }]);
    expect([...m.servicePorts.keys()]).toEqual(['default/dns:dns', 'default/dns:dns-tcp']);
  });

  it('takes SCTP', () => {
    const m = buildProxyModel([svc('sctp', { ports: [{ name: 's', protocol: 'SCTP', port: 9999 }] })], []);
    expect(port(m, 'default/sctp:s').protocol).toBe('SCTP');
  });
});

describe('nodePort', () => {
  it('keeps node ports of NodePort and LoadBalancer Services', () => {
    const m = buildProxyModel(
      [
        svc('np', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
        svc('lb', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30081 }] }),
        svc('unallocated', { type: 'NodePort', ports: [{ name: 'http', port: 80 }] }),
      ],
      [],
    );
    expect(m.problems).toEqual([]);
    expect(port(m, 'default/np:http').nodePort).toBe(30080);
    expect(port(m, 'default/lb:http').nodePort).toBe(30081);
    expect(port(m, 'default/unallocated:http').nodePort).toBe(0);
  });

  it('ignores a node port on a ClusterIP Service, with a problem', () => {
    const m = buildProxyModel([svc('cip', { ports: [{ name: 'http', port: 80, nodePort: 30080 }] })], []);
    expect(m.problems).toEqual([{ object: 'Service default/cip', message: expect.stringMatching(/nodePort 30080 on a ClusterIP Service; nodePort ignored/) }]);
    expect(port(m, 'default/cip:http').nodePort).toBe(0);
  });

  it('skips a port reusing a node port of the same protocol', () => {
    const m = buildProxyModel(
      [svc('np', { type: 'NodePort', ports: [{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 81, nodePort: 30080 }, { name: 'c', protocol: 'UDP', port: 80, nodePort: 30080 }] })],
      [],
    );
    expect(m.problems).toEqual([{ object: 'Service default/np', message: 'spec.ports[1] ("b"): duplicate nodePort 30080/TCP (as spec.ports[0]); port skipped' }]);
    expect([...m.servicePorts.keys()]).toEqual(['default/np:a', 'default/np:c']);
  });

  it('skips a port with an invalid node port', () => {
    const m = buildProxyModel([svc('np', { type: 'NodePort', ports: [{ name: 'a', port: 80, nodePort: 70000 }, { name: 'b', port: 81, nodePort: 30081 }] })], []);
    expect(m.problems).toEqual([{ object: 'Service default/np', message: expect.stringMatching(/spec\.ports\[0\] \("a"\): nodePort 70000/) }]);
    expect([...m.servicePorts.keys()]).toEqual(['default/np:b']);
  });
});

describe('session affinity', () => {
  it('defaults the ClientIP timeout to 10800 seconds', () => {
    expect(DEFAULT_CLIENT_IP_TIMEOUT).toBe(10800);
    const m = buildProxyModel([svc('sticky', { sessionAffinity: 'ClientIP' })], []);
    expect(port(m, 'default/sticky:http').sessionAffinity).toEqual({ type: 'ClientIP', timeoutSeconds: 10800 });
  });

  it('takes an explicit timeout', () => {
    const m = buildProxyModel([svc('sticky', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } })], []);
    expect(port(m, 'default/sticky:http').sessionAffinity).toEqual({ type: 'ClientIP', timeoutSeconds: 60 });
  });

  it('None ignores any config', () => {
    const m = buildProxyModel([svc('loose', { sessionAffinity: 'None', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } })], []);
    expect(port(m, 'default/loose:http').sessionAffinity).toEqual({ type: 'None' });
  });
});

describe('internalTrafficPolicy', () => {
  it('is read as given', () => {
    const m = buildProxyModel([svc('itp', { internalTrafficPolicy: 'Local' })], []);
    expect(port(m, 'default/itp:http').internalTrafficPolicy).toBe('Local');
  });
});

describe('svcplane.io/endpoint-weights', () => {
  it('is parsed onto every port of the Service; a bad entry is one problem naming the Service, the rest apply', () => {
    const s = svc('weighted', { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }] });
    s.metadata!.annotations = { 'svcplane.io/endpoint-weights': 'node/n1=3,10.1.0.5=0,zone/x=banana' };
    const m = buildProxyModel([s], []);
    const ports = [...m.servicePorts.values()];
    expect(ports).toHaveLength(2);
    for (const p of ports) {
      expect(p.endpointWeights?.nodes.get('n1')).toBe(3);
      expect(p.endpointWeights?.addresses.get('10.1.0.5')).toBe(0);
    }
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0].object).toBe('Service default/weighted');
    expect(m.problems[0].message).toMatch(/zone\/x=banana/);
  });
});

describe('claim precedence (two Services claiming one address:port)', () => {
  it('reads creationTimestamp; the older Service precedes, then the name; no timestamp comes last', async () => {
    const { claimPrecedence } = await import('../../src/model/precedence');
    const m = buildProxyModel([
      svc('a', {}, { metadata: { name: 'a', namespace: 'default', creationTimestamp: '2026-03-01T10:00:00Z' } }),
      svc('b', {}, { metadata: { name: 'b', namespace: 'default', creationTimestamp: '2026-01-01T10:00:00Z' } }),
      svc('c', {}, { metadata: { name: 'c', namespace: 'default' } }),
      svc('d', {}, { metadata: { name: 'd', namespace: 'default', creationTimestamp: '2026-01-01T10:00:00Z' } }),
    ], []);
    expect(port(m, 'default/b:http').createdAt).toBe('2026-01-01T10:00:00.000Z');
    expect(port(m, 'default/c:http').createdAt).toBe('');
    const order = [...m.servicePorts.values()].sort(claimPrecedence).map((p) => p.name);
    expect(order).toEqual(['b', 'd', 'a', 'c']);
  });
});
