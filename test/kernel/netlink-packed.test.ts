// The addon's packed netlink exchange against this machine's kernel (rtnetlink: IPVS itself is tested in the qemu
// guest): many requests written by NetlinkWriter in one buffer, one ack per page, and still every refusal reported
// against the request that caused it; `ip` reads the result back independently. Also the net.* sysctl helper.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native';
import { NetlinkWriter, splitMessages } from '../../src/netlink/message';
import * as rtnl from '../../src/netlink/rtnl';
import { inNetns, makeNetns, requireRoot } from '../helpers/root';

const haveRoot = requireRoot('netlink-packed');

describe.runIf(haveRoot)('packed netlink exchanges (rtnetlink) and namespace sysctls', () => {
  let ns: ReturnType<typeof makeNetns>;
  let index = 0;
  beforeAll(() => {
    ns = makeNetns('pk');
    // This kernel has no dummy links: a bridge holds the routes just as well.
    inNetns(ns.name, ['ip', 'link', 'add', 'svc0', 'type', 'bridge']);
    inNetns(ns.name, ['ip', 'link', 'set', 'svc0', 'up']);
    index = Number(/^(\d+):/.exec(inNetns(ns.name, ['ip', '-o', 'link', 'show', 'svc0']))![1]);
  });
  afterAll(() => ns?.remove());

  it('sends 3000 requests in a few pages, one ack each, and names exactly the refused ones', async () => {
    const t = new (native().NetlinkTransceiver)({ bus: 'route', netns: ns.path });
    try {
      const w = new NetlinkWriter(256);
      const ip = (i: number) => `198.18.${200 + (i >> 8)}.${i & 255}`;
      for (let i = 0; i < 3000; i++) rtnl.writeNewLocalRoute(w, index, ip(i));
      rtnl.writeNewLocalRoute(w, index, ip(7)); // 3000: exists already
      rtnl.writeDelLocalRoute(w, index, '198.18.250.1'); // 3001: never added
      rtnl.writeNewLocalRoute(w, index, 'fd00:200::1'); // 3002: IPv6, fine
      const r = await t.transactPacked(w.finish(), { ackLastOnly: true });
      expect(r.count).toBe(3003);
      expect(r.sends).toBeGreaterThan(1); // paged
      expect(r.failures.map((f) => [f.index, f.code])).toEqual([[3000, 'EEXIST'], [3001, 'ESRCH']]);
      // An independent reader: ip lists every route with svcplane's protocol number.
      const v4 = inNetns(ns.name, ['ip', 'route', 'show', 'table', 'local', 'proto', String(rtnl.RTPROT_SVCPLANE)]).trim().split('\n');
      expect(v4).toHaveLength(3000);
      expect(v4[0]).toMatch(/^local 198\.18\.200\.0 dev svc0 .*scope host/);
      expect(inNetns(ns.name, ['ip', '-6', 'route', 'show', 'table', 'local', 'proto', String(rtnl.RTPROT_SVCPLANE)])).toContain('local fd00:200::1 dev svc0');
      // And the dump decodes back to the same set (our own reader).
      const dump = await t.transactPacked(rtnl.dumpRoutesRequest());
      const routes = splitMessages(dump.replies[0].data).map(rtnl.decodeRoute).filter((x): x is rtnl.RouteInfo => !!x && rtnl.isServiceRoute(x, index));
      expect(routes).toHaveLength(3001);
      // Traffic-wise, a bound address is local: the kernel's own lookup says so.
      expect(inNetns(ns.name, ['ip', 'route', 'get', '198.18.200.9'])).toMatch(/^local 198\.18\.200\.9 dev lo/);
    } finally {
      t.close();
    }
  });

  it('reads and writes net.* sysctls inside a namespace, and refuses others', async () => {
    const sysctl = native().netSysctl;
    const before = await sysctl('net.ipv4.ip_forward');
    await sysctl('net.ipv4.ip_forward', ns.path, '1');
    expect(await sysctl('net.ipv4.ip_forward', ns.path)).toBe('1');
    expect(inNetns(ns.name, ['cat', '/proc/sys/net/ipv4/ip_forward']).trim()).toBe('1');
    expect(await sysctl('net.ipv4.ip_forward')).toBe(before); // this namespace's is untouched
    await expect(sysctl('kernel.hostname', ns.path, 'x')).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(sysctl('net.ipv4.no_such_knob', ns.path)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
