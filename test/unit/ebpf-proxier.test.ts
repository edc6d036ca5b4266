// The ebpf dataplane against the fakes (FakeEbpfKernel, FakeNftClient; both held to the kernels by contract suites):
// what each Service feature puts in the socket-LB maps, the order map updates are sent in, partial syncs that end
// where a full sync would, adoption after a restart, and a kernel refusal.
import { describe, expect, it } from 'vitest';
import { EbpfProxier } from '../../src/dataplane/ebpf/proxier';
import { FakeEbpfKernel } from '../../src/dataplane/ebpf/fake';
import { readImage } from '../../src/dataplane/ebpf/converge';
import { slotKey } from '../../src/dataplane/ebpf/image';
import { FLAG } from '../../src/dataplane/ebpf/layout';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { FakeNftClient } from '../../src/dataplane/nftables/fake';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import type { ServicePort, ServicePortKey } from '../../src/model/types';
import { ep, portsOf, servicePort } from '../helpers/service-port';

const NODE_ADDRESSES = ['198.18.0.1', 'fd00::1', 'fe80::1'];

function proxier(store: object = {}) {
  const kernel = new FakeEbpfKernel(store);
  const nft = new NftablesProxier(new FakeNftClient(), defaultConfig({ nodeName: 'node-a' }));
  const p = new EbpfProxier(kernel, nft, { nodePortAddresses: [], node: { name: 'node-a' }, nodeAddresses: async () => NODE_ADDRESSES });
  return { p, kernel };
}

/** The maps as meaning: frontend -> count, flags and the backends slot by slot (ids are the agent's business). */
async function meaning(kernel: FakeEbpfKernel): Promise<Record<string, string>> {
  const img = await readImage(kernel);
  const out: Record<string, string> = {};
  for (const [k, { value }] of img.services) {
    const slots: string[] = [];
    for (let i = 1; i <= value.count; i++) {
      const b = img.backends.get(img.slots.get(slotKey(value.set, i)) ?? -1);
      slots.push(b ? `${b.address}:${b.port}` : 'MISSING');
    }
    out[k] = `count=${value.count} flags=${value.flags} aff=${value.affinitySeconds} [${slots.join(' ')}]`;
  }
  return out;
}

describe('ebpf dataplane: what the socket-LB maps hold', () => {
  it('a ClusterIP, its external IP and NodePort on every node address but link-local; no endpoints: count 0', async () => {
    const { p, kernel } = proxier();
    await p.syncFull(portsOf(
      servicePort('web', { nodePort: 30080, externalIPs: ['198.18.200.1'] }),
      servicePort('empty', { clusterIPs: ['198.18.100.12'], endpoints: [], allEndpoints: [] }),
    ));
    expect(await meaning(kernel)).toEqual({
      'TCP|198.18.100.10|80': 'count=2 flags=0 aff=0 [198.18.2.11:8080 198.18.2.12:8080]',
      'TCP|198.18.200.1|80': `count=2 flags=${FLAG.external} aff=0 [198.18.2.11:8080 198.18.2.12:8080]`,
      'TCP|198.18.0.1|30080': `count=2 flags=${FLAG.external} aff=0 [198.18.2.11:8080 198.18.2.12:8080]`,
      'TCP|198.18.100.12|80': 'count=0 flags=0 aff=0 []',
    });
  });

  it('leaves to the nftables table what a socket cannot honour: SCTP, source ranges, Local policy without a local endpoint', async () => {
    const { p, kernel } = proxier();
    await p.syncFull(portsOf(
      servicePort('sctp', { protocol: 'SCTP' }),
      servicePort('ranges', { clusterIPs: ['198.18.100.20'], loadBalancerIPs: ['198.18.201.1'], loadBalancerSourceRanges: ['203.0.113.0/24'] }),
      servicePort('local', { clusterIPs: ['198.18.100.21'], internalTrafficPolicy: 'Local' }),
    ));
    expect(Object.keys(await meaning(kernel)).sort()).toEqual(['TCP|198.18.100.20|80']);
  });

  it('affinity, weights and a Local policy with a local endpoint', async () => {
    const { p, kernel } = proxier();
    await p.syncFull(portsOf(
      servicePort('sticky', { sessionAffinity: { type: 'ClientIP', timeoutSeconds: 60 } }),
      servicePort('weighted', { clusterIPs: ['198.18.100.30'], endpointWeights: { addresses: new Map([['198.18.2.11', 3]]), nodes: new Map(), zones: new Map() } }),
      servicePort('local', { clusterIPs: ['198.18.100.31'], internalTrafficPolicy: 'Local', endpoints: [ep('198.18.2.11', 8080, 'node-a'), ep('198.18.2.12', 8080, 'node-b')], allEndpoints: [ep('198.18.2.11', 8080, 'node-a'), ep('198.18.2.12', 8080, 'node-b')] }),
    ));
    const m = await meaning(kernel);
    expect(m['TCP|198.18.100.10|80']).toBe(`count=2 flags=${FLAG.affinity} aff=60 [198.18.2.11:8080 198.18.2.12:8080]`);
    expect(m['TCP|198.18.100.30|80']).toBe('count=4 flags=0 aff=0 [198.18.2.11:8080 198.18.2.11:8080 198.18.2.11:8080 198.18.2.12:8080]');
    expect(m['TCP|198.18.100.31|80']).toBe('count=1 flags=0 aff=0 [198.18.2.11:8080]');
  });
});

describe('ebpf dataplane: updates', () => {
  it('grows slots before the count and shrinks the count before the slots; unused backends go last', async () => {
    const { p, kernel } = proxier();
    const two = servicePort('web');
    await p.syncFull(portsOf(two));
    kernel.log.length = 0;
    const three = servicePort('web', { endpoints: [...two.endpoints, ep('198.18.2.13')], allEndpoints: [...two.endpoints, ep('198.18.2.13')] });
    await p.syncPartial(new Map([[three.key, three]]));
    expect(kernel.log).toEqual(['update svp_backends 1', 'update svp_slots 1', 'update svp_member 1', 'update svp_svc 1']);
    kernel.log.length = 0;
    const one = servicePort('web', { endpoints: [ep('198.18.2.13')], allEndpoints: [ep('198.18.2.13')] });
    await p.syncPartial(new Map([[one.key, one]]));
    expect(kernel.log).toEqual(['update svp_slots 1', 'update svp_svc 1', 'delete svp_slots 2', 'delete svp_member 2', 'delete svp_backends 2']);
    expect(await meaning(kernel)).toEqual({ 'TCP|198.18.100.10|80': 'count=1 flags=0 aff=0 [198.18.2.13:8080]' });
  });

  it('partial syncs end where a full sync of the same Service ports ends', async () => {
    const { p, kernel } = proxier();
    const ports = new Map<ServicePortKey, ServicePort>();
    const addr = (i: number) => `198.18.2.${10 + (i % 40)}`;
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    await p.syncFull(ports);
    for (let step = 0; step < 200; step++) {
      const name = `svc${rnd(12)}`;
      const key = `default/${name}:http`;
      const change = new Map<ServicePortKey, ServicePort | undefined>();
      if (rnd(5) === 0) change.set(key, undefined);
      else {
        const eps = Array.from({ length: rnd(5) }, (_, i) => ep(addr(rnd(50) + i)));
        const uniq = [...new Map(eps.map((e) => [e.address, e])).values()];
        change.set(key, servicePort(name, { clusterIPs: [`198.18.100.${10 + Number(name.slice(3))}`], endpoints: uniq, allEndpoints: uniq, nodePort: rnd(2) ? 30000 + Number(name.slice(3)) : 0 }));
      }
      for (const [k, v] of change) (v ? ports.set(k, v) : ports.delete(k));
      await p.syncPartial(change);
    }
    const fresh = proxier();
    await fresh.p.syncFull(ports);
    expect(await meaning(kernel)).toEqual(await meaning(fresh.kernel));
    // And nothing left behind: no slot, member or backend beyond what the Services use.
    const a = await readImage(kernel);
    const b = await readImage(fresh.kernel);
    expect([a.slots.size, a.members.size, a.backends.size]).toEqual([b.slots.size, b.members.size, b.backends.size]);
  });

  it('ids are reused: pods and Services churning for a long time keep them as low as the live objects', async () => {
    const { p, kernel } = proxier();
    await p.syncFull(portsOf(servicePort('web')));
    for (let i = 0; i < 300; i++) {
      // A rolling update (a new pod address each round) and a Service that comes and goes.
      const eps = [ep(`198.18.${3 + (i >> 8)}.${i & 0xff}`), ep('198.18.2.11')];
      const web = servicePort('web', { endpoints: eps, allEndpoints: eps });
      const job = servicePort(`job${i}`, { clusterIPs: ['198.18.100.40'] });
      await p.syncPartial(new Map<ServicePortKey, ServicePort | undefined>([[web.key, web], [job.key, job]]));
      await p.syncPartial(new Map([[job.key, undefined]]));
    }
    const img = await readImage(kernel);
    const highest = (ids: Iterable<number>) => Math.max(...ids);
    expect(img.backends.size).toBe(2);
    expect(highest(img.backends.keys())).toBeLessThanOrEqual(4);
    expect(highest([...img.services.values()].map((s) => s.value.set))).toBeLessThanOrEqual(3);
    expect(await meaning(kernel)).toEqual({ 'TCP|198.18.100.10|80': 'count=2 flags=0 aff=0 [198.18.4.43:8080 198.18.2.11:8080]' });
  });

  it('a restart adopts the maps: the first full sync writes nothing', async () => {
    const store = {};
    const first = proxier(store);
    const ports = portsOf(servicePort('web', { nodePort: 30080 }), servicePort('api', { clusterIPs: ['198.18.100.11'] }));
    await first.p.syncFull(ports);
    first.p.close();
    const second = proxier(store);
    const r = await second.p.syncFull(ports);
    expect(r.summary['bpf map writes']).toBeUndefined();
    expect(r.summary['bpf map deletes']).toBeUndefined();
    expect(second.kernel.log).toEqual([]);
  });

  it('a kernel refusal fails the sync naming the map; the next sync is full and finishes the job', async () => {
    const { p, kernel } = proxier();
    await p.syncFull(portsOf(servicePort('web')));
    const moved = servicePort('web', { endpoints: [ep('198.18.2.20')], allEndpoints: [ep('198.18.2.20')] });
    kernel.failNext = { map: 'svp_slots', code: 'E2BIG', errno: 7 };
    await expect(p.syncPartial(new Map([[moved.key, moved]]))).rejects.toThrow(/svp_slots/);
    const r = await p.syncPartial(new Map([[moved.key, moved]]));
    expect(r.full).toBe(true);
    expect(await meaning(kernel)).toEqual({ 'TCP|198.18.100.10|80': 'count=1 flags=0 aff=0 [198.18.2.20:8080]' });
  });
});
