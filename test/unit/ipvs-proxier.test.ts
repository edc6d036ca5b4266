// IpvsProxier against FakeIpvsKernel and FakeNftClient (both held to the kernel by their contract suites): what a
// sync sends and what it leaves, quickly and on every run. The same behaviours on a real kernel with traffic are
// the guest's (test/vm/guest/ipvs-*.test.ts).
import { describe, expect, it } from 'vitest';
import { defaultIpvsConfig, type IpvsProxierConfig } from '../../src/dataplane/ipvs/config';
import { OWNED_FLAG, vsKey } from '../../src/dataplane/ipvs/desired';
import { FakeIpvsKernel, type FakeIpvsOptions } from '../../src/dataplane/ipvs/fake';
import { IpvsProxier } from '../../src/dataplane/ipvs/proxier';
import * as ipvs from '../../src/netlink/ipvs';
import { FakeNftClient } from '../../src/dataplane/nftables/fake';
import type { StaleFlow } from '../../src/dataplane/conntrack';
import * as rtnl from '../../src/netlink/rtnl';
import { FakeClock } from '../../src/sync/clock';
import { ep, portsOf, servicePort } from '../helpers/service-port';

const sp = servicePort;
const ports = portsOf;

function setup(over: Partial<IpvsProxierConfig> = {}, kernelOpts: FakeIpvsOptions = {}) {
  const kernel = new FakeIpvsKernel(kernelOpts);
  const nft = new FakeNftClient();
  const clock = new FakeClock();
  const stale: StaleFlow[][] = [];
  const conntrack = {
    deleteStale: async (flows: StaleFlow[]) => { stale.push(flows); return { deleted: { 4: flows.length, 6: 0 }, errors: [] }; },
    deleteUnNatted: async () => ({ deleted: { 4: 0, 6: 0 }, errors: [] }), // the nftables mode's only
    close() {},
  };
  const proxier = new IpvsProxier(kernel, nft, defaultIpvsConfig({ gracefulTimeoutMs: 60_000, ...over }), undefined, conntrack, clock);
  const svc = (address: string, port = 80, protocol: ipvs.IpvsProtocol = 'TCP') => kernel.services.get(vsKey({ protocol, address, port }));
  const dests = (address: string, port = 80, protocol: ipvs.IpvsProtocol = 'TCP') =>
    [...(svc(address, port, protocol)?.dests.values() ?? [])].map((d) => `${d.address}:${d.port} w${d.weight}`).sort();
  const linkIndex = () => [...kernel.links.values()].find((l) => l.name === 'svcplane0')?.index;
  const bound = () => kernel.routes.filter((r) => rtnl.isServiceRoute(r, linkIndex() ?? -1)).map((r) => r.dst).sort();
  return { kernel, nft, clock, proxier, svc, dests, bound, stale };
}

describe('IpvsProxier (on the fake kernel)', () => {
  it('a full sync: svcplane0 made and up, virtual services with the mark, real servers, addresses bound, sysctls set; a second sync sends nothing', async () => {
    const t = setup();
    const r = await t.proxier.syncFull(ports(sp('web', { nodePort: 30080 })));
    expect(r.problems).toEqual([]);
    const link = await t.kernel.link('svcplane0');
    expect(link).toMatchObject({ kind: 'dummy' });
    expect(link!.flags & rtnl.IFF_UP).toBe(rtnl.IFF_UP);
    expect(t.svc('198.18.100.10')!.vs.flags & OWNED_FLAG).toBe(OWNED_FLAG);
    expect(t.dests('198.18.100.10')).toEqual(['198.18.2.11:8080 w1', '198.18.2.12:8080 w1']);
    expect(t.dests('198.18.0.1', 30080)).toHaveLength(2); // the NodePort on the node's address (eth0), not on lo
    expect(t.svc('127.0.0.1', 30080)).toBeUndefined();
    expect(t.bound()).toEqual(['198.18.100.10']);
    expect(t.kernel.sysctls.get('net.ipv4.vs.conntrack')).toBe('1');
    expect(t.kernel.services.has(vsKey({ protocol: 'TCP', address: '203.0.113.253', port: 20000 }))).toBe(false); // scheduler check left nothing
    const seen = t.kernel.operationsSeen;
    const again = await t.proxier.syncFull(ports(sp('web', { nodePort: 30080 })));
    expect(again.summary['ipvs operations']).toBe(0);
    expect(t.kernel.operationsSeen - seen).toBe(0); // the scheduler is checked once per process
  });

  it('a partial sync sends only what changed: a new endpoint added, a ClusterIP moved (unbound, bound), nothing else', async () => {
    const t = setup();
    await t.proxier.syncFull(ports(sp('web'), sp('db', { clusterIPs: ['198.18.100.20'] })));
    const r = await t.proxier.syncPartial(ports(sp('web', { endpoints: [ep('198.18.2.11'), ep('198.18.2.12'), ep('198.18.2.13')] }), sp('db', { clusterIPs: ['198.18.100.21'] })));
    expect(r.full).toBe(false);
    expect(t.dests('198.18.100.10')).toHaveLength(3);
    expect(t.svc('198.18.100.20')).toBeUndefined();
    expect(t.dests('198.18.100.21')).toHaveLength(2);
    expect(t.bound()).toEqual(['198.18.100.10', '198.18.100.21']);
    // add real server, delete service, add service + 2 real servers, bind + unbind
    expect(r.summary['ipvs operations']).toBe(7);
  });

  it('graceful termination: a TCP endpoint gone is drained (weight 0), kept while it has connections, deleted once idle; one back gets its weight back', async () => {
    const t = setup();
    const web = (...eps: string[]) => ports(sp('web', { endpoints: eps.map((a) => ep(a)) }));
    await t.proxier.syncFull(web('198.18.2.11', '198.18.2.12', '198.18.2.13'));
    const vs = t.svc('198.18.100.10')!.vs;
    t.kernel.setConnections(vs, { address: '198.18.2.12', port: 8080 }, 1);
    await t.proxier.syncPartial(web('198.18.2.11'));
    expect(t.dests('198.18.100.10')).toEqual(['198.18.2.11:8080 w1', '198.18.2.12:8080 w0']); // .13 was idle: deleted at once
    expect(t.proxier.drainingCount).toBe(1);
    expect(t.proxier.housekeepingDue()).toBe(true);
    await t.proxier.housekeeping();
    expect(t.dests('198.18.100.10')).toHaveLength(2); // still a connection
    t.kernel.setConnections(vs, { address: '198.18.2.12', port: 8080 }, 0);
    await t.proxier.housekeeping();
    expect(t.dests('198.18.100.10')).toEqual(['198.18.2.11:8080 w1']);
    expect(t.proxier.drainingCount).toBe(0);

    // Drained, then wanted again before it went: its weight comes back and it is no longer draining.
    await t.proxier.syncPartial(web('198.18.2.11', '198.18.2.14'));
    t.kernel.setConnections(vs, { address: '198.18.2.14', port: 8080 }, 3);
    await t.proxier.syncPartial(web('198.18.2.11'));
    expect(t.dests('198.18.100.10')).toEqual(['198.18.2.11:8080 w1', '198.18.2.14:8080 w0']);
    await t.proxier.syncPartial(web('198.18.2.11', '198.18.2.14'));
    expect(t.dests('198.18.100.10')).toEqual(['198.18.2.11:8080 w1', '198.18.2.14:8080 w1']);
    expect(t.proxier.drainingCount).toBe(0);
  });

  it('graceful termination ends after gracefulTimeoutMs on the injected clock, connections or not', async () => {
    const t = setup({ gracefulTimeoutMs: 60_000 });
    const web = (...eps: string[]) => ports(sp('web', { endpoints: eps.map((a) => ep(a)) }));
    await t.proxier.syncFull(web('198.18.2.11', '198.18.2.12'));
    t.kernel.setConnections(t.svc('198.18.100.10')!.vs, { address: '198.18.2.12', port: 8080 }, 5);
    await t.proxier.syncPartial(web('198.18.2.11'));
    await t.clock.advance(59_000);
    await t.proxier.housekeeping();
    expect(t.dests('198.18.100.10')).toHaveLength(2);
    await t.clock.advance(1_000);
    await t.proxier.housekeeping();
    expect(t.dests('198.18.100.10')).toEqual(['198.18.2.11:8080 w1']);
  });

  it('a UDP endpoint gone is deleted at once and its flows handed to the conntrack cleaner', async () => {
    const t = setup();
    const dns = (...eps: string[]) => ports(sp('dns', { protocol: 'UDP', port: 53, endpoints: eps.map((a) => ep(a, 53)) }));
    await t.proxier.syncFull(dns('198.18.2.11', '198.18.2.12'));
    const r = await t.proxier.syncPartial(dns('198.18.2.11'));
    expect(t.dests('198.18.100.10', 53, 'UDP')).toEqual(['198.18.2.11:53 w1']);
    expect(t.stale).toEqual([[{ family: 4, dst: '198.18.100.10', dport: 53, endpoint: '198.18.2.12', endpointPort: 53 }]]);
    expect(r.conntrackDeleted).toEqual({ 4: 1, 6: 0 });
  });

  it('a refusal fails the sync naming the Service; the next sync is full, re-reads the kernel and converges', async () => {
    const t = setup();
    await t.proxier.syncFull(ports(sp('web')));
    t.kernel.refuseWhere((d) => d.includes('198.18.2.13'), 'EINVAL');
    await expect(t.proxier.syncPartial(ports(sp('web', { endpoints: [ep('198.18.2.11'), ep('198.18.2.12'), ep('198.18.2.13')] }))))
      .rejects.toThrow(/add real server 198\.18\.2\.13:8080 to TCP 198\.18\.100\.10:80 \(Service default\/web:http\): EINVAL/);
    t.kernel.refuseWhere(undefined);
    const r = await t.proxier.syncPartial(new Map());
    expect(r.full).toBe(true);
    expect(t.dests('198.18.100.10')).toHaveLength(3);
  });

  it('a virtual service whose mark was cleared (ipvsadm -E) is taken back and repaired, with a warning; a foreign one elsewhere is left alone', async () => {
    const t = setup();
    await t.proxier.syncFull(ports(sp('web')));
    const mine = t.svc('198.18.100.10')!;
    mine.vs = { ...mine.vs, flags: ipvs.SVC_FLAG.HASHED, scheduler: 'wrr' };
    const foreign: ipvs.VirtualServiceState = { family: 4, protocol: 'TCP', address: '198.18.100.99', port: 80, scheduler: 'rr', flags: ipvs.SVC_FLAG.HASHED, timeout: 0, netmask: 0xffffffff };
    t.kernel.services.set(vsKey(foreign), { vs: foreign, dests: new Map() });
    const r = await t.proxier.syncFull(ports(sp('web')));
    expect(r.warnings?.join('\n')).toMatch(/TCP 198\.18\.100\.10:80 \(Service default\/web:http\) had lost svcplane's mark/);
    expect(t.svc('198.18.100.10')!.vs).toMatchObject({ scheduler: 'rr', flags: OWNED_FLAG | ipvs.SVC_FLAG.HASHED });
    expect(t.svc('198.18.100.99')!.vs.flags).toBe(ipvs.SVC_FLAG.HASHED);
  });

  it('bindMode address after route: the old bindings go first, then the new; and the other way round', async () => {
    const t = setup({ bindMode: 'route' });
    await t.proxier.syncFull(ports(sp('web')));
    expect(t.bound()).toEqual(['198.18.100.10']);
    const asAddress = new IpvsProxier(t.kernel, t.nft, defaultIpvsConfig({ bindMode: 'address' }));
    await asAddress.syncFull(ports(sp('web')));
    const index = (await t.kernel.link('svcplane0'))!.index;
    expect(t.bound()).toEqual([]);
    expect(t.kernel.addresses.filter((a) => a.index === index).map((a) => a.address)).toEqual(['198.18.100.10']);
    await t.proxier.syncFull(ports(sp('web')));
    expect(t.bound()).toEqual(['198.18.100.10']);
    expect(t.kernel.addresses.filter((a) => a.index === index)).toEqual([]);
  });

  it('the dry run counts what a sync would do and writes nothing', async () => {
    const t = setup();
    const plan = await t.proxier.plan(ports(sp('web')));
    expect(plan.operations).toBeGreaterThan(0);
    expect(plan.table).toContain('create dummy link svcplane0');
    expect(plan.services['default/web:http']).toBeDefined();
    expect(t.kernel.operationsSeen).toBe(0);
    expect(await t.kernel.link('svcplane0')).toBeUndefined();
    expect(t.kernel.sysctls.get('net.ipv4.vs.conntrack')).toBe('0');
  });

  it('status reads the kernel; cleanup removes exactly what svcplane made', async () => {
    const t = setup();
    await t.proxier.syncFull(ports(sp('web'), sp('empty', { clusterIPs: ['198.18.100.30'], endpoints: [] })));
    const foreign: ipvs.VirtualServiceState = { family: 4, protocol: 'TCP', address: '198.18.100.99', port: 80, scheduler: 'rr', flags: ipvs.SVC_FLAG.HASHED, timeout: 0, netmask: 0xffffffff };
    t.kernel.services.set(vsKey(foreign), { vs: foreign, dests: new Map() });
    const st = await t.proxier.status();
    expect(st.rows.map((r) => [r.address, r.service, r.reject, r.endpoints.length])).toEqual(expect.arrayContaining([
      ['198.18.100.10', 'default/web:http', false, 2], ['198.18.100.30', 'default/empty:http', true, 0],
    ]));
    expect(st.rows.some((r) => r.address === '198.18.100.99')).toBe(false);
    expect(await t.proxier.cleanup()).toBe(true);
    expect([...t.kernel.services.keys()]).toEqual([vsKey(foreign)]);
    expect(await t.kernel.link('svcplane0')).toBeUndefined();
    expect(await t.proxier.cleanup()).toBe(false);
  });

  it('a kernel without IPVS, or without the scheduler\'s module: refused before anything is changed', async () => {
    const none = setup({}, { noIpvs: true });
    await expect(none.proxier.syncFull(ports(sp('web')))).rejects.toThrow(/no IPVS/);
    const noSched = setup({ scheduler: 'dh' }, { schedulers: ['rr'] });
    await expect(noSched.proxier.syncFull(ports(sp('web')))).rejects.toThrow(/IPVS scheduler "dh" is not available in this kernel/);
    for (const t of [none, noSched]) {
      expect(await t.kernel.link('svcplane0')).toBeUndefined();
      expect(t.kernel.sysctls.get('net.ipv4.ip_forward')).toBe('0');
      expect(t.kernel.services.size).toBe(0);
    }
  });

  it('a read-only /proc/sys: vs.conntrack unset fails the sync with why; set beforehand, the sync goes on', async () => {
    const t = setup({}, { readOnlySysctls: true });
    await expect(t.proxier.syncFull(ports(sp('web')))).rejects.toThrow(/net\.ipv4\.vs\.conntrack=1.*IPVS mode needs it for masquerade/);
    for (const [k] of t.kernel.sysctls) t.kernel.sysctls.set(k, '1');
    await t.proxier.syncFull(ports(sp('web')));
    expect(t.dests('198.18.100.10')).toHaveLength(2);
  });
});
