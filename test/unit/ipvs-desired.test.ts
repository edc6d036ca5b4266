import { describe, expect, it } from 'vitest';
import { OWNED_FLAG, destKey, nodePortAddressesOf, planServicePort, vsKey } from '../../src/dataplane/ipvs/desired';
import { SVC_FLAG } from '../../src/netlink/ipvs';
import type { Endpoint, ServicePort } from '../../src/model/types';

const ep = (address: string, port = 8080): Endpoint => ({ address, family: address.includes(':') ? 6 : 4, port, ready: true, serving: true, terminating: false });

function sp(over: Partial<ServicePort> = {}): ServicePort {
  const endpoints = over.endpoints ?? [ep('198.18.2.11'), ep('198.18.2.12'), ep('fd00:2::11')];
  return {
    key: 'default/web:http', namespace: 'default', name: 'web', portName: 'http', protocol: 'TCP', port: 80, nodePort: 30080,
    clusterIPs: ['198.18.100.10', 'fd00:100::10'], externalIPs: ['203.0.113.7'], loadBalancerIPs: [], externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster', sessionAffinity: { type: 'None' }, healthCheckNodePort: 0, loadBalancerSourceRanges: [],
    endpoints, allEndpoints: endpoints, ...over,
  };
}

describe('IPVS desired state', () => {
  const cfg = { scheduler: 'rr', nodeAddresses: ['198.18.1.1', 'fd00:1::1'] };

  it('a virtual service per ClusterIP, external IP and node address (NodePort), real servers of the same family', () => {
    const p = planServicePort(sp(), cfg);
    expect([...p.services.keys()].sort()).toEqual([
      vsKey({ protocol: 'TCP', address: '198.18.1.1', port: 30080 }), vsKey({ protocol: 'TCP', address: '198.18.100.10', port: 80 }),
      vsKey({ protocol: 'TCP', address: '203.0.113.7', port: 80 }), vsKey({ protocol: 'TCP', address: 'fd00:1::1', port: 30080 }),
      vsKey({ protocol: 'TCP', address: 'fd00:100::10', port: 80 }),
    ].sort());
    const v4 = p.services.get(vsKey({ protocol: 'TCP', address: '198.18.100.10', port: 80 }))!;
    expect([...v4.dests.keys()]).toEqual([destKey({ address: '198.18.2.11', port: 8080 }), destKey({ address: '198.18.2.12', port: 8080 })]);
    expect(v4.vs).toMatchObject({ scheduler: 'rr', flags: OWNED_FLAG, netmask: 0xffffffff });
    expect(p.services.get(vsKey({ protocol: 'TCP', address: 'fd00:100::10', port: 80 }))!.dests.size).toBe(1);
    // Bound on the Service-address interface: ClusterIPs and external IPs, never node addresses.
    expect(p.addresses.sort()).toEqual(['198.18.100.10', '203.0.113.7', 'fd00:100::10']);
  });

  it('sessionAffinity ClientIP is IPVS persistence with its timeout', () => {
    const p = planServicePort(sp({ sessionAffinity: { type: 'ClientIP', timeoutSeconds: 600 } }), cfg);
    for (const d of p.services.values()) {
      expect(d.vs.flags & SVC_FLAG.PERSISTENT).toBe(SVC_FLAG.PERSISTENT);
      expect(d.vs.timeout).toBe(600);
    }
  });

  it('the scheduler annotation is honoured when valid, and refused with a reason when not', () => {
    expect([...planServicePort(sp({ ipvsScheduler: 'sh' }), cfg).services.values()][0].vs.scheduler).toBe('sh');
    const bad = planServicePort(sp({ ipvsScheduler: 'fastest' }), cfg);
    expect([...bad.services.values()][0].vs.scheduler).toBe('rr');
    expect(bad.schedulerProblem).toMatch(/"fastest" is not one of rr, wrr/);
  });

  it('NodePort addresses: every address but loopback, link-local and the Service interface, within nodePortAddresses', () => {
    const addrs = [
      { address: '127.0.0.1', scope: 254, link: 'lo' }, { address: '198.18.1.1', scope: 0, link: 'eth0' },
      { address: 'fe80::1', scope: 253, link: 'eth0' }, { address: '198.18.100.10', scope: 0, link: 'svcplane0' }, { address: '10.0.0.1', scope: 0, link: 'eth1' },
    ];
    expect(nodePortAddressesOf(addrs, [], 'svcplane0')).toEqual(['198.18.1.1', '10.0.0.1']);
    expect(nodePortAddressesOf(addrs, ['10.0.0.0/8'], 'svcplane0')).toEqual(['10.0.0.1']);
  });

  it('endpoint weights (svcplane.io/endpoint-weights): real-server weights, most specific entry first; a weightless scheduler is reported', async () => {
    const { parseEndpointWeights } = await import('../../src/model/weights');
    const { canonicalIP } = await import('../../src/model/ip');
    const parsed = parseEndpointWeights('node/big=4, zone/z1=2 198.18.2.12=0 bogus=3 node/x=1000 =2', canonicalIP);
    expect(parsed.problems).toHaveLength(3);
    const eps = [
      { ...ep('198.18.2.11'), nodeName: 'big', zone: 'z1' }, // node beats zone
      { ...ep('198.18.2.12'), nodeName: 'big' }, // address beats node
      { ...ep('198.18.2.13'), zone: 'z1' },
      { ...ep('198.18.2.14'), nodeName: 'small' }, // no entry: 1
    ];
    const p = planServicePort(sp({ endpoints: eps, endpointWeights: parsed.weights, ipvsScheduler: 'wrr' }), cfg);
    const d = p.services.get(vsKey({ protocol: 'TCP', address: '198.18.100.10', port: 80 }))!;
    expect([...d.dests.values()].map((x) => [x.address, x.weight])).toEqual([['198.18.2.11', 4], ['198.18.2.12', 0], ['198.18.2.13', 2], ['198.18.2.14', 1]]);
    expect(p.schedulerProblem).toBeUndefined();
    expect(planServicePort(sp({ endpoints: eps, endpointWeights: parsed.weights }), cfg).schedulerProblem).toMatch(/no effect with scheduler rr/);
    // Without the annotation every endpoint weighs 1.
    expect([...planServicePort(sp({ endpoints: eps }), cfg).services.values()][0].dests.get('198.18.2.12|8080')?.weight).toBe(1);
  });
});
