// The netlink codecs are mirror images: what an encoder writes, its decoder reads back; and the bytes are the ones
// the kernel's uapi headers define (checked against hand-assembled expectations).
import { describe, expect, it } from 'vitest';
import * as ipvs from '../../src/dataplane/ipvs/netlink';
import { familyIdOf, getFamilyRequest, parseGenl } from '../../src/netlink/genl';
import { AttrWriter, Attrs, NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, nlmsg, parseHeader } from '../../src/netlink/message';
import * as rtnl from '../../src/netlink/rtnl';

describe('netlink attributes', () => {
  it('pads to 4 bytes, nests with NLA_F_NESTED, and reads back', () => {
    const b = new AttrWriter().u8(1, 7).u16(2, 0x1234).be16(3, 80).u32(4, 0xdeadbeef).u64(5, 1n << 40n).string(6, 'rr')
      .nested(7, (w) => w.u32(1, 42)).bytes();
    expect(b.subarray(0, 8)).toEqual(Buffer.from([5, 0, 1, 0, 7, 0, 0, 0])); // len 5, type 1, value, 3 bytes pad
    const a = new Attrs(b);
    expect([a.u8(1), a.u16(2), a.be16(3), a.u32(4), a.u64(5), a.string(6), a.nested(7)?.u32(1)]).toEqual([7, 0x1234, 80, 0xdeadbeef, 1n << 40n, 'rr', 42]);
    // The nest's type carries NLA_F_NESTED on the wire.
    const nestOff = b.length - 12;
    expect(b.readUInt16LE(nestOff + 2)).toBe(7 | NLA_F_NESTED);
  });

  it('frames a message with its length and flags (seq and pid left to the addon)', () => {
    const m = nlmsg(16, NLM_F_REQUEST | NLM_F_ACK, Buffer.from([1, 2, 3]));
    expect(m.length).toBe(20);
    expect(parseHeader(m)).toEqual({ len: 19, type: 16, flags: 5, seq: 0, pid: 0 });
  });

  it('generic netlink: asks the controller for a family by name, reads its id', () => {
    const req = getFamilyRequest('IPVS');
    const g = parseGenl(req);
    expect([g.family, g.cmd, g.attrs.string(2)]).toEqual([0x10, 3, 'IPVS']);
    const reply = nlmsg(0x10, 0, Buffer.concat([Buffer.from([1, 2, 0, 0]), new AttrWriter().u16(1, 0x1b).string(2, 'IPVS').bytes()]));
    expect(familyIdOf(reply)).toBe(0x1b);
  });
});

describe('IPVS messages', () => {
  const svc: ipvs.VirtualService = { family: 4, protocol: 'TCP', address: '198.18.100.10', port: 80, scheduler: 'rr', flags: 0, timeout: 0, netmask: 0xffffffff };
  const svc6: ipvs.VirtualService = { ...svc, family: 6, protocol: 'SCTP', address: 'fd00:100::10', flags: ipvs.SVC_FLAG.PERSISTENT, timeout: 10800, netmask: 128, scheduler: 'sh' };
  const rs: ipvs.RealServer = { address: '198.18.2.11', port: 8080, weight: 3, forward: ipvs.FWD.MASQ, upperThreshold: 0, lowerThreshold: 0 };

  it('a service round-trips through new/set/del requests', () => {
    for (const s of [svc, svc6]) {
      const back = ipvs.decodeService(ipvs.newServiceRequest(0x1b, s));
      expect(back).toMatchObject({ ...s });
      expect(ipvs.commandOf(ipvs.setServiceRequest(0x1b, s))).toBe(ipvs.CMD.SET_SERVICE);
      expect(ipvs.decodeService(ipvs.delServiceRequest(0x1b, s))).toMatchObject({ family: s.family, protocol: s.protocol, address: s.address, port: s.port });
    }
  });

  it('the wire bytes follow ip_vs.h: AF u16, protocol u16, 16-byte address, port in network order', () => {
    const m = ipvs.newServiceRequest(0x1b, svc);
    const g = parseGenl(m);
    expect([parseHeader(m).type, g.cmd, g.version, parseHeader(m).flags]).toEqual([0x1b, 1, 1, NLM_F_REQUEST | NLM_F_ACK]);
    const nest = g.attrs.nested(1)!;
    expect(nest.u16(1)).toBe(2);
    expect(nest.u16(2)).toBe(6);
    expect(nest.get(3)).toEqual(Buffer.from([198, 18, 100, 10, ...new Array(12).fill(0)]));
    expect(nest.get(4)).toEqual(Buffer.from([0, 80]));
    expect(nest.get(7)).toEqual(Buffer.from([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])); // flags, mask
  });

  it('a real server round-trips, with its service beside it', () => {
    const m = ipvs.newDestRequest(0x1b, svc, rs);
    expect(ipvs.decodeDest(m)).toMatchObject(rs);
    expect(ipvs.decodeService(m)).toMatchObject({ address: svc.address, port: 80 });
    expect(ipvs.decodeDest(ipvs.delDestRequest(0x1b, svc, rs))).toMatchObject({ address: rs.address, port: rs.port });
    expect(ipvs.decodeDest(ipvs.newDestRequest(0x1b, svc6, { ...rs, address: 'fd00:2::11' }))).toMatchObject({ address: 'fd00:2::11' });
  });

  it('dumps ask with NLM_F_DUMP', () => {
    expect(parseHeader(ipvs.dumpServicesRequest(0x1b)).flags).toBe(NLM_F_REQUEST | NLM_F_DUMP);
    const d = ipvs.dumpDestsRequest(0x1b, svc);
    expect([parseHeader(d).flags, ipvs.commandOf(d)]).toEqual([NLM_F_REQUEST | NLM_F_DUMP, ipvs.CMD.GET_DEST]);
  });
});

describe('rtnetlink messages', () => {
  it('a dummy link request names the link and its kind', () => {
    const m = rtnl.newDummyLinkRequest('svcplane0');
    expect(parseHeader(m).type).toBe(rtnl.RTM.NEWLINK);
    // The request decodes as a link (the kernel's replies have the same layout).
    const asReply = Buffer.from(m);
    expect(rtnl.decodeLink(asReply)).toMatchObject({ name: 'svcplane0', kind: 'dummy', flags: rtnl.IFF_UP });
  });

  it('address requests carry a host prefix, and decode back', () => {
    const v4 = rtnl.newAddrRequest(7, '198.18.100.10');
    expect(rtnl.decodeAddr(v4)).toEqual({ index: 7, address: '198.18.100.10', prefixlen: 32, scope: 0 });
    expect(rtnl.decodeAddr(rtnl.newAddrRequest(7, 'fd00:100::10'))).toMatchObject({ address: 'fd00:100::10', prefixlen: 128 });
    expect(parseHeader(rtnl.delAddrRequest(7, '198.18.100.10')).type).toBe(rtnl.RTM.DELADDR);
  });
});

describe('NetlinkWriter', () => {
  it('writes the same bytes as the one-message encoders, across buffer growth, with NUL-terminated strings and zeroed padding', async () => {
    const { NetlinkWriter } = await import('../../src/netlink/writer');
    const ipvs = await import('../../src/dataplane/ipvs/netlink');
    const vs = { family: 4 as const, protocol: 'TCP' as const, address: '198.19.3.119', port: 80, scheduler: 'rr', flags: 0x20, timeout: 0, netmask: 0xffffffff };
    // A tiny initial buffer filled with garbage first: growth and stale bytes must not leak into messages.
    const w = new NetlinkWriter(16);
    for (let i = 0; i < 300; i++) {
      ipvs.writeNewService(w, 42, { ...vs, scheduler: i % 2 ? 'rr' : 'lblcr' });
      ipvs.writeNewDest(w, 42, vs, { address: '198.18.1.7', port: 8080, weight: 1, forward: 0, upperThreshold: 0, lowerThreshold: 0 });
    }
    const all = w.finish();
    expect(w.count).toBe(600);
    const one = Buffer.concat([ipvs.newServiceRequest(42, { ...vs, scheduler: 'rr' }), ipvs.newDestRequest(42, vs, { address: '198.18.1.7', port: 8080, weight: 1, forward: 0, upperThreshold: 0, lowerThreshold: 0 })]);
    const lblcr = ipvs.newServiceRequest(42, { ...vs, scheduler: 'lblcr' });
    const pairLen = lblcr.length + one.length - ipvs.newServiceRequest(42, vs).length;
    expect(all.subarray(0, lblcr.length).equals(lblcr)).toBe(true);
    expect(all.length).toBe(150 * pairLen + 150 * one.length);
    expect(all.subarray(all.length - one.length).equals(one)).toBe(true);
    expect(ipvs.decodeService(all.subarray(all.length - one.length))?.scheduler).toBe('rr');
  });
});

describe('ctnetlink codec', () => {
  it('a kernel-filtered dump asks for exactly the fields given; a delete reads back as the entry it deletes', async () => {
    const ct = await import('../../src/netlink/ctnetlink');
    const dump = ct.filteredDumpRequest({ family: 4, orig: { dst: '198.18.100.10', proto: 17, dport: 53 }, reply: { src: '198.18.2.11', proto: 17, sport: 8080 } });
    expect(dump.readUInt16LE(4)).toBe((1 << 8) | 1); // CTNETLINK GET
    expect(ct.decodeFilter(dump)).toEqual({
      orig: ct.CT_FILTER.IP_DST | ct.CT_FILTER.PROTO_NUM | ct.CT_FILTER.PROTO_DST_PORT,
      reply: ct.CT_FILTER.IP_SRC | ct.CT_FILTER.PROTO_NUM | ct.CT_FILTER.PROTO_SRC_PORT,
    });
    expect(ct.decodeEntry(dump)).toMatchObject({ family: 4, orig: { dst: '198.18.100.10', proto: 17, dport: 53 }, reply: { src: '198.18.2.11', sport: 8080 } });
    const e = { family: 6 as const, orig: { src: 'fd00:1::2', dst: 'fd00:100::10', proto: 17, sport: 40000, dport: 53 }, reply: {}, id: 0xdeadbeef, zone: 3 };
    expect(ct.decodeEntry(ct.deleteRequest(e))).toEqual(e);
  });
});
