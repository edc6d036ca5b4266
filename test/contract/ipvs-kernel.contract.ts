// The behaviour every IpvsKernel must have (what the IPVS dataplane asks of the kernel), as one vitest suite:
// test/unit/ipvs-fake.contract.test.ts runs it against FakeIpvsKernel, test/vm/guest/ipvs-kernel.contract.test.ts
// against IpvsClient on Debian's kernel in the test guest (this machine's kernel has no IPVS), so the fake the IPVS
// unit tests rely on cannot drift from the kernel. Where they disagree the kernel is right.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OpBatch } from '../../src/dataplane/ipvs/client';
import { OWNED_FLAG } from '../../src/dataplane/ipvs/desired';
import type { IpvsKernel } from '../../src/dataplane/ipvs/ipvsKernel';
import * as ipvs from '../../src/netlink/ipvs';
import * as rtnl from '../../src/netlink/rtnl';
import { type NetlinkWriter, oneMessage } from '../../src/netlink/message';

export interface IpvsContractSubject {
  kernel: IpvsKernel;
  /** Releases the client and whatever it runs in (a network namespace). */
  done(): void;
}

const LINK = 'svctest0';
const vs4: ipvs.VirtualService = { family: 4, protocol: 'TCP', address: '198.18.50.1', port: 80, scheduler: 'rr', flags: OWNED_FLAG, timeout: 0, netmask: 0xffffffff };
const vs6: ipvs.VirtualService = { family: 6, protocol: 'UDP', address: 'fd00::50:1', port: 53, scheduler: 'rr', flags: OWNED_FLAG | ipvs.SVC_FLAG.PERSISTENT, timeout: 600, netmask: 128 };
const dest = (address: string, weight = 1, upperThreshold = 0): ipvs.RealServer => ({ address, port: 8080, weight, forward: ipvs.FWD.MASQ, upperThreshold, lowerThreshold: 0 });

type Step = [describe: string, write: (w: NetlinkWriter, family: number) => void, tolerate?: number[]];

export function ipvsKernelContract(name: string, make: () => Promise<IpvsContractSubject>): void {
  describe(`IpvsKernel contract: ${name}`, () => {
    let s: IpvsContractSubject;
    beforeEach(async () => {
      s = await make();
    });
    afterEach(() => s.done());

    /** One batch of IPVS operations; returns the failures as [operation, code]. */
    const ipvsBatch = async (...steps: Step[]) => {
      const fam = await s.kernel.familyId();
      const b = new OpBatch();
      for (const [what, write, tolerate] of steps) {
        write(b.w, fam);
        b.op(what, tolerate);
      }
      const r = await s.kernel.applyIpvs(b);
      expect(r.operations).toBe(steps.length);
      return r.failures.map((f) => [f.operation, f.code]);
    };
    /** rtnetlink requests, one each (Operation[]: the client's other way of sending); failures as [operation, code]. */
    const routeBatch = async (...steps: Array<[string, Buffer | ((w: NetlinkWriter) => void), number[]?]>) => {
      const ops = steps.map(([describe, req, tolerate]) => ({ describe, request: Buffer.isBuffer(req) ? req : oneMessage(req), tolerate }));
      return (await s.kernel.applyRoute(ops)).failures.map((f) => [f.operation, f.code]);
    };
    const services = async () => (await s.kernel.listServices()).map((v) => ({ ...v, stats: undefined })).sort((a, b) => a.address.localeCompare(b.address));
    const destsOf = async (v: ipvs.VirtualServiceKey) => (await s.kernel.listDests([v]))[0]
      .map((d) => ({ address: d.address, port: d.port, weight: d.weight, forward: d.forward, upperThreshold: d.upperThreshold, activeConns: d.activeConns }))
      .sort((a, b) => a.address.localeCompare(b.address));
    const makeLink = async () => {
      expect(await routeBatch(['create', rtnl.newDummyLinkRequest(LINK)])).toEqual([]);
      const link = await s.kernel.link(LINK);
      expect(link).toBeDefined();
      return link!;
    };
    const serviceRoutes = async (index: number) => (await s.kernel.allRoutes()).filter((r) => rtnl.isServiceRoute(r, index)).map((r) => r.dst).sort();
    const addressesOn = async (index: number) => (await s.kernel.allAddresses()).filter((a) => a.index === index && a.scope !== 253).map((a) => a.address).sort();

    it('virtual services: added, listed as the kernel keeps them (hashed), updated, deleted', async () => {
      expect(await ipvsBatch(['add 4', (w, f) => ipvs.writeNewService(w, f, vs4)], ['add 6', (w, f) => ipvs.writeNewService(w, f, vs6)])).toEqual([]);
      const hashed = (v: ipvs.VirtualService) => ({ ...v, flags: v.flags | ipvs.SVC_FLAG.HASHED, stats: undefined });
      expect(await services()).toEqual([hashed(vs4), hashed(vs6)]);
      const changed = { ...vs4, scheduler: 'wrr', flags: OWNED_FLAG | ipvs.SVC_FLAG.PERSISTENT, timeout: 300 };
      expect(await ipvsBatch(['set', (w, f) => ipvs.writeSetService(w, f, changed)])).toEqual([]);
      expect(await services()).toEqual([hashed(changed), hashed(vs6)]);
      expect(await ipvsBatch(['del', (w, f) => ipvs.writeDelService(w, f, vs4)])).toEqual([]);
      expect(await services()).toEqual([hashed(vs6)]);
    });

    it('a refusal carries the kernel\'s errno and names its operation; the rest of the batch applies; tolerated errnos are no failure', async () => {
      expect(await ipvsBatch(
        ['add', (w, f) => ipvs.writeNewService(w, f, vs4)],
        ['add again', (w, f) => ipvs.writeNewService(w, f, vs4)],
        ['add again, EEXIST tolerated', (w, f) => ipvs.writeNewService(w, f, vs4), [17]],
        ['add 6', (w, f) => ipvs.writeNewService(w, f, vs6)],
        ['set missing', (w, f) => ipvs.writeSetService(w, f, { ...vs4, port: 81 })],
        ['delete missing', (w, f) => ipvs.writeDelService(w, f, { ...vs4, port: 81 })],
        ['no such scheduler', (w, f) => ipvs.writeNewService(w, f, { ...vs4, port: 82, scheduler: 'nosuch' })],
        ['set to no such scheduler', (w, f) => ipvs.writeSetService(w, f, { ...vs6, scheduler: 'nosuch' })],
      )).toEqual([['add again', 'EEXIST'], ['set missing', 'ESRCH'], ['delete missing', 'ESRCH'], ['no such scheduler', 'ENOENT'], ['set to no such scheduler', 'ENOENT']]);
      expect((await services()).map((v) => [v.address, v.scheduler])).toEqual([['198.18.50.1', 'rr'], ['fd00::50:1', 'rr']]);
    });

    it('real servers: added, re-weighted (thresholds too), deleted; refused as the kernel refuses', async () => {
      expect(await ipvsBatch(
        ['add', (w, f) => ipvs.writeNewService(w, f, vs4)],
        ['a', (w, f) => ipvs.writeNewDest(w, f, vs4, dest('198.18.2.1'))],
        ['b', (w, f) => ipvs.writeNewDest(w, f, vs4, dest('198.18.2.2', 3))],
        ['6', (w, f) => ipvs.writeNewService(w, f, vs6)],
        ['6a', (w, f) => ipvs.writeNewDest(w, f, vs6, dest('fd00::2:1'))],
      )).toEqual([]);
      expect(await destsOf(vs4)).toEqual([
        { address: '198.18.2.1', port: 8080, weight: 1, forward: 0, upperThreshold: 0, activeConns: 0 },
        { address: '198.18.2.2', port: 8080, weight: 3, forward: 0, upperThreshold: 0, activeConns: 0 },
      ]);
      expect((await destsOf(vs6)).map((d) => d.address)).toEqual(['fd00::2:1']);
      expect(await ipvsBatch(
        ['a again', (w, f) => ipvs.writeNewDest(w, f, vs4, dest('198.18.2.1'))],
        ['b drained', (w, f) => ipvs.writeSetDest(w, f, vs4, dest('198.18.2.2', 0, 5))],
        ['set missing c', (w, f) => ipvs.writeSetDest(w, f, vs4, dest('198.18.2.3'))],
        ['delete missing c', (w, f) => ipvs.writeDelDest(w, f, vs4, dest('198.18.2.3'))],
        ['to a missing service', (w, f) => ipvs.writeNewDest(w, f, { ...vs4, port: 81 }, dest('198.18.2.3'))],
        ['delete a', (w, f) => ipvs.writeDelDest(w, f, vs4, dest('198.18.2.1'))],
      )).toEqual([['a again', 'EEXIST'], ['set missing c', 'ENOENT'], ['delete missing c', 'ENOENT'], ['to a missing service', 'ESRCH']]);
      expect(await destsOf(vs4)).toEqual([{ address: '198.18.2.2', port: 8080, weight: 0, forward: 0, upperThreshold: 5, activeConns: 0 }]);
      expect(await s.kernel.listDests([{ ...vs4, port: 81 }, vs6])).toEqual([[], expect.any(Array)]);
      expect(await ipvsBatch(['delete the service', (w, f) => ipvs.writeDelService(w, f, vs4)])).toEqual([]);
      expect(await s.kernel.listDests([vs4])).toEqual([[]]);
    });

    it('the Service-address link: a dummy link created (EEXIST again), found by name, set up, deleted with what it held', async () => {
      const link = await makeLink();
      expect(link.kind).toBe('dummy');
      expect(await routeBatch(['again', rtnl.newDummyLinkRequest(LINK)])).toEqual([['again', 'EEXIST']]);
      expect(await routeBatch(['up', rtnl.setLinkUpRequest(link.index)])).toEqual([]);
      expect((await s.kernel.link(LINK))!.flags & rtnl.IFF_UP).toBe(rtnl.IFF_UP);
      expect(await routeBatch(
        ['route', (w) => rtnl.writeNewLocalRoute(w, link.index, '198.18.60.1')],
        ['address', (w) => rtnl.writeNewAddr(w, link.index, '198.18.60.2')],
      )).toEqual([]);
      expect(await routeBatch(['delete', rtnl.delLinkRequest(link.index)])).toEqual([]);
      expect(await s.kernel.link(LINK)).toBeUndefined();
      expect(await addressesOn(link.index)).toEqual([]);
      expect(await serviceRoutes(link.index)).toEqual([]);
      expect(await routeBatch(['delete again', rtnl.delLinkRequest(link.index)])).toEqual([['delete again', 'ENODEV']]);
    });

    it('Service addresses bound as local routes and as addresses, both families; unbound; refused as the kernel refuses', async () => {
      const { index } = await makeLink();
      expect(await routeBatch(
        ['r4', (w) => rtnl.writeNewLocalRoute(w, index, '198.18.60.1')],
        ['r6', (w) => rtnl.writeNewLocalRoute(w, index, 'fd00::60:1')],
        ['a4', (w) => rtnl.writeNewAddr(w, index, '198.18.60.2')],
        ['a6', (w) => rtnl.writeNewAddr(w, index, 'fd00::60:2')],
      )).toEqual([]);
      expect(await serviceRoutes(index)).toEqual(['198.18.60.1', 'fd00::60:1']);
      expect(await addressesOn(index)).toEqual(['198.18.60.2', 'fd00::60:2']);
      expect(await routeBatch(
        ['r4 again', (w) => rtnl.writeNewLocalRoute(w, index, '198.18.60.1')],
        ['a4 again', (w) => rtnl.writeNewAddr(w, index, '198.18.60.2')],
        ['a6 again', (w) => rtnl.writeNewAddr(w, index, 'fd00::60:2')],
        ['r6 gone', (w) => rtnl.writeDelLocalRoute(w, index, 'fd00::60:1')],
        ['r6 gone again', (w) => rtnl.writeDelLocalRoute(w, index, 'fd00::60:1')],
        ['a6 gone', (w) => rtnl.writeDelAddr(w, index, 'fd00::60:2')],
        ['a6 gone again', (w) => rtnl.writeDelAddr(w, index, 'fd00::60:2')],
      )).toEqual([['r4 again', 'EEXIST'], ['a4 again', 'EEXIST'], ['a6 again', 'EEXIST'], ['r6 gone again', 'ESRCH'], ['a6 gone again', 'EADDRNOTAVAIL']]);
      expect(await serviceRoutes(index)).toEqual(['198.18.60.1']);
      expect(await addressesOn(index)).toEqual(['198.18.60.2']);
    });

    it('a link\'s last IPv4 address deleted takes every IPv4 route through it; IPv6 routes stay (fib_disable_ip)', async () => {
      const { index } = await makeLink();
      expect(await routeBatch(
        ['up', rtnl.setLinkUpRequest(index)],
        ['a4', (w) => rtnl.writeNewAddr(w, index, '198.18.60.2')],
        ['a4b', (w) => rtnl.writeNewAddr(w, index, '198.18.60.3')],
        ['r4', (w) => rtnl.writeNewLocalRoute(w, index, '198.18.60.1')],
        ['r6', (w) => rtnl.writeNewLocalRoute(w, index, 'fd00::60:1')],
        ['a4 gone', (w) => rtnl.writeDelAddr(w, index, '198.18.60.2')],
      )).toEqual([]);
      expect(await serviceRoutes(index)).toEqual(['198.18.60.1', 'fd00::60:1']); // another IPv4 address is left
      expect(await routeBatch(['a4b gone', (w) => rtnl.writeDelAddr(w, index, '198.18.60.3')])).toEqual([]);
      expect(await serviceRoutes(index)).toEqual(['fd00::60:1']);
    });

    it('net.* sysctls read and written in the kernel\'s namespace', async () => {
      expect(await s.kernel.sysctl('net.ipv4.vs.conntrack')).toBe('0');
      await s.kernel.sysctl('net.ipv4.vs.conntrack', '1');
      expect(await s.kernel.sysctl('net.ipv4.vs.conntrack')).toBe('1');
      await s.kernel.sysctl('net.ipv4.vs.conntrack', '0');
      expect(await s.kernel.sysctl('net.ipv4.vs.conntrack')).toBe('0');
    });
  });
}
