// The netlink codec (src/netlink/attribute.ts, message.ts): what the encoder writes the decoder reads back; the
// decoder checks every length and keeps the first problem as a sticky error instead of throwing mid-parse; and the
// family codecs built on them are mirror images, with the bytes the kernel's uapi headers define.
import { describe, expect, it } from 'vitest';
import { AttributeDecoder, AttributeEncoder, NLA_F_NESTED, NLA_F_NET_BYTEORDER, throwIfFailed } from '../../src/netlink/attribute';
import { GrowableBuffer } from '../../src/netlink/buffer';
import { familyIdOf, getFamilyRequest, parseGenl } from '../../src/netlink/genl';
import * as ipvs from '../../src/netlink/ipvs';
import { NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkWriter, attributesOf, oneMessage, parseHeader, splitMessages } from '../../src/netlink/message';
import * as rtnl from '../../src/netlink/rtnl';

/** Every attribute of a run as [type, value] (values as bytes). */
function entries(b: Buffer): Array<[number, Buffer]> {
  const d = new AttributeDecoder(b);
  const out: Array<[number, Buffer]> = [];
  while (d.next()) out.push([d.type(), d.bytes()]);
  expect(d.err()).toBeUndefined();
  return out;
}

/** One attribute of `type` with exactly these value bytes, padded. */
function attr(type: number, value: number[]): Buffer {
  const b = Buffer.alloc((4 + value.length + 3) & ~3);
  b.writeUInt16LE(4 + value.length, 0);
  b.writeUInt16LE(type, 2);
  Buffer.from(value).copy(b, 4);
  return b;
}

describe('attribute encoder -> decoder', () => {
  it('round-trips every type, padded to 4 bytes, nests marked NLA_F_NESTED', () => {
    const b = new AttributeEncoder(8) // small: the buffer grows on the way
      .u8(1, 7).u16(2, 0x1234).be16(3, 80).u32(4, 0xdeadbeef).be32(5, 0x01020304).u64(6, 1n << 40n).be64(7, (1n << 63n) + 5n)
      .string(8, 'rr').bytes(9, Buffer.from([1, 2, 3])).ip(10, '198.18.100.10').ip(11, 'fd00::1').ip(12, '10.0.0.1', 16).u32pair(13, 3, 0xffffffff)
      .nested(14, (e) => e.u32(1, 42).nested(2, (n) => n.string(1, 'deep')))
      .encode();
    expect(b.subarray(0, 8)).toEqual(Buffer.from([5, 0, 1, 0, 7, 0, 0, 0])); // len 5, type 1, value, 3 bytes of zero padding
    const got: Record<string, unknown> = {};
    const d = new AttributeDecoder(b);
    while (d.next()) {
      switch (d.type()) {
        case 1: got.u8 = d.u8(); break;
        case 2: got.u16 = d.u16(); break;
        case 3: got.be16 = d.be16(); break;
        case 4: got.u32 = d.u32(); break;
        case 5: got.be32 = d.be32(); break;
        case 6: got.u64 = d.u64(); break;
        case 7: got.be64 = d.be64(); break;
        case 8: got.string = d.string(); break;
        case 9: got.bytes = [...d.bytes()]; break;
        case 10: got.ip4 = d.ip(); break;
        case 11: got.ip6 = d.ip(); break;
        case 12: got.wide = [...d.bytes()]; break;
        case 13: got.pair = d.u32pair(); break;
        case 14:
          expect(d.typeFlags()).toBe(NLA_F_NESTED);
          d.nested((n) => {
            while (n.next()) {
              if (n.type() === 1) got.inner = n.u32();
              else if (n.type() === 2) n.nested((m) => { while (m.next()) got.deep = m.string(); });
            }
          });
          break;
      }
    }
    expect(d.err()).toBeUndefined();
    expect(got).toEqual({
      u8: 7, u16: 0x1234, be16: 80, u32: 0xdeadbeef, be32: 0x01020304, u64: 1n << 40n, be64: (1n << 63n) + 5n, string: 'rr', bytes: [1, 2, 3],
      ip4: '198.18.100.10', ip6: 'fd00::1', wide: [10, 0, 0, 1, ...new Array(12).fill(0)], pair: [3, 0xffffffff], inner: 42, deep: 'deep',
    });
  });

  it('writes byte orders as asked: host order little-endian, be* network order, strings NUL-terminated', () => {
    expect(entries(new AttributeEncoder().u16(1, 0x0102).be16(2, 0x0102).u32(3, 1).be32(4, 1).be32(5, -150).string(6, 'ab').encode()).map(([, v]) => [...v]))
      .toEqual([[2, 1], [1, 2], [1, 0, 0, 0], [0, 0, 0, 1], [0xff, 0xff, 0xff, 0x6a], [0x61, 0x62, 0]]);
  });

  it('nestStart/nestEnd and nested() write the same bytes', () => {
    const a = new AttributeEncoder().nested(3, (e) => e.u8(1, 1).string(2, 'x')).encode();
    const e = new AttributeEncoder();
    const n = e.nestStart(3);
    e.u8(1, 1).string(2, 'x');
    expect(e.nestEnd(n).encode()).toEqual(a);
    expect(a.readUInt16LE(0)).toBe(a.length);
    expect(a.readUInt16LE(2)).toBe(3 | NLA_F_NESTED);
  });

  it('masks NLA_F_NESTED and NLA_F_NET_BYTEORDER off the type, and reports them apart', () => {
    const d = new AttributeDecoder(attr(5 | NLA_F_NET_BYTEORDER, [0, 1]));
    expect(d.next()).toBe(true);
    expect([d.type(), d.typeFlags(), d.be16()]).toEqual([5, NLA_F_NET_BYTEORDER, 1]);
    expect(d.next()).toBe(false);
    expect(d.err()).toBeUndefined();
  });

  it('a string without its NUL reads whole; with one, up to it; bytes() and nested() are views of the input', () => {
    const b = Buffer.concat([attr(1, [0x61, 0x62]), attr(2, [0x61, 0, 0x62, 0])]);
    const d = new AttributeDecoder(b);
    const s: string[] = [];
    while (d.next()) s.push(d.string());
    expect(s).toEqual(['ab', 'a']);
    const v = new AttributeDecoder(b);
    v.next();
    expect(v.bytes().buffer).toBe(b.buffer);
  });
});

describe('attribute decoder: length checks and the sticky error', () => {
  const getters: Array<[string, number, (d: AttributeDecoder) => unknown, unknown]> = [
    ['u8', 1, (d) => d.u8(), 0],
    ['u16', 2, (d) => d.u16(), 0],
    ['be16', 2, (d) => d.be16(), 0],
    ['u32', 4, (d) => d.u32(), 0],
    ['be32', 4, (d) => d.be32(), 0],
    ['u32 pair', 8, (d) => d.u32pair(), [0, 0]],
    ['u64', 8, (d) => d.u64(), 0n],
    ['be64', 8, (d) => d.be64(), 0n],
  ];

  for (const [name, width, get, zero] of getters) {
    it(`${name} wants exactly ${width} bytes: shorter or longer is an error, and the zero value`, () => {
      for (const len of [0, width - 1, width + 1]) {
        if (len < 0) continue;
        const d = new AttributeDecoder(Buffer.concat([attr(9, new Array(len).fill(0xff)), attr(10, [1, 2, 3, 4])]));
        expect(d.next()).toBe(true);
        expect(() => get(d)).not.toThrow();
        expect(get(d)).toEqual(zero);
        expect(d.err()?.message).toBe(`netlink: attribute 9 is not a ${name}: ${len} bytes`);
        // Sticky: iteration stops, the first error is kept.
        expect(d.next()).toBe(false);
        d.fail('a later problem');
        expect(d.err()?.message).toBe(`netlink: attribute 9 is not a ${name}: ${len} bytes`);
      }
      const ok = new AttributeDecoder(attr(9, new Array(width).fill(0)));
      ok.next();
      get(ok);
      expect(ok.err()).toBeUndefined();
    });
  }

  it('an address is 4 or 16 bytes', () => {
    for (const len of [0, 3, 5, 8, 15, 17]) {
      const d = new AttributeDecoder(attr(1, new Array(len).fill(1)));
      d.next();
      expect(d.ip()).toBe('');
      expect(d.err()?.message).toBe(`netlink: attribute 1 is not an IP address: ${len} bytes`);
    }
  });

  it('after an error every getter returns its zero value', () => {
    const d = new AttributeDecoder(Buffer.concat([attr(1, [1, 2]), attr(2, [0x61, 0])]));
    d.next();
    d.u32();
    expect([d.u8(), d.u16(), d.be16(), d.u32(), d.be32(), d.u64(), d.be64(), d.string(), d.bytes().length, d.ip(), d.u32pair()]).toEqual([0, 0, 0, 0, 0, 0n, 0n, '', 0, '', [0, 0]]);
    let called = false;
    d.nested(() => (called = true));
    expect(called).toBe(false);
    expect(d.err()?.message).toBe('netlink: attribute 1 is not a u32: 2 bytes');
  });

  it('short or broken framing: a truncated header, a length past the end, a length below the header', () => {
    const cases: Array<[Buffer, string]> = [
      [Buffer.concat([attr(1, [1, 0, 0, 0]), Buffer.from([8, 0])]), 'netlink: 2 trailing bytes, less than an attribute header'],
      [Buffer.from([12, 0, 1, 0, 1, 2, 3, 4]), 'netlink: attribute of length 12 at offset 0 does not fit in the 8 bytes left'],
      [Buffer.from([2, 0, 1, 0, 1, 2, 3, 4]), 'netlink: attribute of length 2 at offset 0 does not fit in the 8 bytes left'],
    ];
    for (const [b, message] of cases) {
      const d = new AttributeDecoder(b);
      let n = 0;
      while (d.next()) n++;
      expect(d.err()?.message).toBe(message);
      expect(n).toBeLessThanOrEqual(1);
    }
  });

  it('a getter with no current attribute is an error, not a throw', () => {
    const d = new AttributeDecoder(attr(1, [1]));
    expect(d.u8()).toBe(0);
    expect(d.err()?.message).toBe('netlink: u8 read with no current attribute (next() first)');
  });

  it('an error inside a nest becomes the outer decoder\'s, and stops it', () => {
    const b = new AttributeEncoder().nested(1, (e) => e.u16(1, 5).u8(2, 1)).u32(2, 9).encode();
    const d = new AttributeDecoder(b);
    const seen: number[] = [];
    while (d.next()) {
      seen.push(d.type());
      if (d.type() === 1) d.nested((n) => { while (n.next()) n.u32(); }); // u16 read as u32
    }
    expect(seen).toEqual([1]);
    expect(d.err()?.message).toBe('netlink: attribute 1 is not a u32: 2 bytes');
    expect(() => throwIfFailed(d, 'thing')).toThrow('decode thing: netlink: attribute 1 is not a u32: 2 bytes');
  });

  it('a nest whose own framing is broken is an error of the outer decoder', () => {
    const d = new AttributeDecoder(attr(1 | NLA_F_NESTED, [9, 0, 1, 0, 1]));
    d.next();
    d.nested((n) => { while (n.next()) n.bytes(); });
    expect(d.err()?.message).toMatch(/does not fit/);
  });

  it('decode(): a kept value read later, its errors the decoder\'s', () => {
    const inner = new AttributeEncoder().u8(1, 3).encode();
    const d = new AttributeDecoder(Buffer.alloc(0));
    let v = -1;
    d.decode(inner, (x) => { while (x.next()) v = x.u8(); });
    expect([v, d.err()]).toEqual([3, undefined]);
    d.decode(inner, (x) => { while (x.next()) x.u16(); });
    expect(d.err()?.message).toBe('netlink: attribute 1 is not a u16: 1 bytes');
  });

  it('a message shorter than its fixed header is an error of its attribute decoder', () => {
    const m = oneMessage((w) => w.begin(16, 0).end()); // no ifinfomsg at all
    const d = attributesOf(m, 16);
    expect(d.next()).toBe(false);
    expect(d.err()?.message).toMatch(/shorter than the 32 before the attributes/);
  });

  it('family decoders report malformed replies once, by throwing after the parse (never a RangeError mid-parse)', () => {
    // An rtnetlink route whose RTA_TABLE is 2 bytes: before, u32 threw a RangeError from Buffer; u64 returned undefined.
    const route = oneMessage((w) => w.begin(24, 2).header([2, 32, 0, 0, 255, 88, 254, 2, 0, 0, 0, 0]).u16(15, 255).ip(1, '198.18.100.10').end());
    expect(() => rtnl.decodeRoute(route)).toThrow('decode rtnetlink route: netlink: attribute 15 is not a u32: 2 bytes');
    const svc = oneMessage((w) => w.begin(0x1b, 2).header([4, 1, 0, 0]).nested(1, (e) => e.u16(1, 2).u16(2, 6).ip(3, '10.0.0.1', 16).be16(4, 80)
      .nested(12, (s) => s.u32(1, 1))).end()); // a 64-bit counter sent as 32 bits
    expect(() => ipvs.decodeService(svc)).toThrow('decode IPVS service: netlink: attribute 1 is not a u64: 4 bytes');
  });
});

describe('message framing', () => {
  it('frames a message with its length and flags (seq and pid left to the addon)', () => {
    const m = oneMessage((w) => w.begin(16, NLM_F_REQUEST | NLM_F_ACK).header([1, 2, 3]).end());
    expect(m.length).toBe(20);
    expect(parseHeader(m)).toEqual({ len: 20, type: 16, flags: 5, seq: 0, pid: 0 });
  });

  it('splits a packed reply into its messages, stopping at a truncated one', () => {
    const w = new NetlinkWriter(16);
    w.begin(16, 0).u32(1, 1).end().begin(17, 0).string(2, 'abc').end().begin(18, 0).end();
    const all = w.finish();
    expect(splitMessages(all).map((m) => parseHeader(m).type)).toEqual([16, 17, 18]);
    expect(splitMessages(all.subarray(0, all.length - 4)).map((m) => parseHeader(m).type)).toEqual([16, 17]);
  });

  it('refuses to nest messages or finish with one open', () => {
    const w = new NetlinkWriter();
    w.begin(16, 0);
    expect(() => w.begin(16, 0)).toThrow('end() the previous message first');
    expect(() => w.finish()).toThrow('a message is still open');
    expect(() => new NetlinkWriter().end()).toThrow('no message begun');
  });

  it('the one growable buffer keeps what was written across growth', () => {
    const g = new GrowableBuffer(2);
    for (let i = 0; i < 100; i++) g.u32(i);
    g.patchU16(0, 0xbeef);
    const v = g.take();
    expect([v.length, v.readUInt16LE(0), v.readUInt32LE(99 * 4)]).toEqual([400, 0xbeef, 99]);
    expect(g.utf8z('é')).toBe(3);
  });
});

describe('generic netlink', () => {
  it('asks the controller for a family by name, reads its id', () => {
    const req = getFamilyRequest('IPVS');
    const g = parseGenl(req);
    let name = '';
    while (g.attrs.next()) if (g.attrs.type() === 2) name = g.attrs.string();
    expect([g.family, g.cmd, name]).toEqual([0x10, 3, 'IPVS']);
    const reply = oneMessage((w) => w.begin(0x10, 0).header([1, 2, 0, 0]).u16(1, 0x1b).string(2, 'IPVS').end());
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
    const nest = new Map<number, Buffer>();
    while (g.attrs.next()) if (g.attrs.type() === 1) g.attrs.nested((n) => { while (n.next()) nest.set(n.type(), n.bytes()); });
    expect(g.attrs.err()).toBeUndefined();
    expect(nest.get(1)).toEqual(Buffer.from([2, 0]));
    expect(nest.get(2)).toEqual(Buffer.from([6, 0]));
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
    expect(rtnl.decodeLink(m)).toMatchObject({ name: 'svcplane0', kind: 'dummy', flags: rtnl.IFF_UP });
  });

  it('address requests carry a host prefix, and decode back', () => {
    const v4 = rtnl.newAddrRequest(7, '198.18.100.10');
    expect(rtnl.decodeAddr(v4)).toEqual({ index: 7, address: '198.18.100.10', prefixlen: 32, scope: 0 });
    expect(rtnl.decodeAddr(rtnl.newAddrRequest(7, 'fd00:100::10'))).toMatchObject({ address: 'fd00:100::10', prefixlen: 128 });
    expect(parseHeader(rtnl.delAddrRequest(7, '198.18.100.10')).type).toBe(rtnl.RTM.DELADDR);
  });
});

describe('NetlinkWriter', () => {
  it('writes the same bytes as the one-message encoders, across buffer growth, with NUL-terminated strings and zeroed padding', () => {
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
