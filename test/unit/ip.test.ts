import { describe, it, expect } from 'vitest';
import {
  bytesToIp,
  canonicalIP,
  cidrContains,
  cidrToString,
  compareIPBytes,
  ipFamily,
  ipToBytes,
  isValidIP,
  parseCIDR,
  parseIP,
} from '../../src/model/ip';

describe('parseIP', () => {
  it('parses IPv4', () => {
    const p = parseIP('10.96.0.1');
    expect(p?.family).toBe(4);
    expect([...(p?.bytes ?? [])]).toEqual([10, 96, 0, 1]);
  });

  it('reads IPv4 octets with leading zeros as decimal, never octal (ParseIPSloppy)', () => {
    expect(canonicalIP('010.001.000.009')).toBe('10.1.0.9');
  });

  it('parses IPv6 to 16 bytes', () => {
    const p = parseIP('fd00::1');
    expect(p?.family).toBe(6);
    expect(p?.bytes.length).toBe(16);
    expect(p?.bytes[0]).toBe(0xfd);
    expect(p?.bytes[15]).toBe(1);
  });

  it('accepts the IPv6 forms Go accepts', () => {
    expect(canonicalIP('::')).toBe('::');
    expect(canonicalIP('::1')).toBe('::1');
    expect(canonicalIP('1::')).toBe('1::');
    expect(canonicalIP('1:2:3:4:5:6:7::')).toBe('1:2:3:4:5:6:7:0');
    expect(canonicalIP('1:2:3:4:5:6:1.2.3.4')).toBe('1:2:3:4:5:6:102:304');
    expect(canonicalIP('::1.2.3.4')).toBe('::102:304');
  });

  it('treats IPv4-mapped IPv6 as IPv4, as Go To4() does', () => {
    const p = parseIP('::ffff:10.0.0.1');
    expect(p?.family).toBe(4);
    expect(p ? bytesToIp(p.bytes) : undefined).toBe('10.0.0.1');
    expect(canonicalIP('::FFFF:0a00:0001')).toBe('10.0.0.1');
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '1.2.3.-1',
    '1.2.3.4 ',
    ' 1.2.3.4',
    '1.2.3.0x1',
    '1234.1.1.1',
    '1.2.3.4/32',
    'fe80::1%eth0',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7::8',
    '1::2::3',
    ':1::',
    '::1:',
    '12345::1',
    'g::1',
    '1.2.3.4::',
    '::1.2.3',
    'a'.repeat(70),
  ])('rejects %j', (text) => {
    expect(parseIP(text)).toBeUndefined();
    expect(isValidIP(text)).toBe(false);
  });

  it('rejects non-strings', () => {
    for (const x of [undefined, null, 1, {}, ['1.2.3.4'], true]) expect(parseIP(x)).toBeUndefined();
  });

  it('reports the family', () => {
    expect(ipFamily('192.168.1.1')).toBe(4);
    expect(ipFamily('2001:db8::1')).toBe(6);
    expect(ipFamily('nope')).toBeUndefined();
  });
});

describe('canonical text (Go net.IP.String, RFC 5952)', () => {
  it.each([
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    // The longest run of zero groups is compressed...
    ['2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::'],
    // ...the first one on a tie...
    ['2001:0:0:1:0:0:1:1', '2001::1:0:0:1:1'],
    // ...and never a single zero group.
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
  ])('%s -> %s', (input, want) => {
    expect(canonicalIP(input)).toBe(want);
  });

  it('round-trips through bytes', () => {
    for (const ip of ['0.0.0.0', '255.255.255.255', '10.96.0.10', 'fd00:10:96::a', '::']) {
      expect(bytesToIp(ipToBytes(ip))).toBe(ip);
    }
  });

  it('ipToBytes throws on invalid text, bytesToIp on a bad length', () => {
    expect(() => ipToBytes('10.0.0.256')).toThrow(/invalid IP address "10.0.0.256"/);
    expect(() => bytesToIp(new Uint8Array(5))).toThrow(/4 or 16 bytes, not 5/);
  });

  it('canonicalIP is undefined for invalid text', () => {
    expect(canonicalIP('x')).toBeUndefined();
  });
});

describe('compareIPBytes', () => {
  it('orders IPv4 before IPv6, then numerically (not as text)', () => {
    const ips = ['fd00::1', '10.0.0.10', '10.0.0.9', '::1', '9.255.255.255'];
    const sorted = [...ips].sort((a, b) => compareIPBytes(ipToBytes(a), ipToBytes(b)));
    expect(sorted).toEqual(['9.255.255.255', '10.0.0.9', '10.0.0.10', '::1', 'fd00::1']);
  });
});

describe('CIDRs', () => {
  it('parses and clears host bits, as Go ParseCIDR', () => {
    const c = parseCIDR('10.1.2.3/8');
    expect(c?.family).toBe(4);
    expect(c?.prefixLength).toBe(8);
    expect(c ? cidrToString(c) : undefined).toBe('10.0.0.0/8');
    const c6 = parseCIDR('2001:DB8:1::5/48');
    expect(c6 ? cidrToString(c6) : undefined).toBe('2001:db8:1::/48');
    expect(cidrToString(parseCIDR('1.2.3.4/0')!)).toBe('0.0.0.0/0');
    expect(cidrToString(parseCIDR('1.2.3.4/32')!)).toBe('1.2.3.4/32');
    expect(cidrToString(parseCIDR('10.255.255.255/13')!)).toBe('10.248.0.0/13');
  });

  it("keeps the text's family for IPv4-mapped CIDRs", () => {
    expect(parseCIDR('::ffff:10.0.0.0/104')?.family).toBe(6);
  });

  it.each(['10.0.0.0', '10.0.0.0/33', '::/129', '10.0.0.0/-1', '10.0.0.0/', '/8', '10.0.0/8', 'fe80::%1/64', '10.0.0.0/8/8'])(
    'rejects %j',
    (text) => {
      expect(parseCIDR(text)).toBeUndefined();
    },
  );

  it('rejects non-strings', () => {
    expect(parseCIDR(8)).toBeUndefined();
    expect(parseCIDR(undefined)).toBeUndefined();
  });

  it('tests membership', () => {
    expect(cidrContains('10.0.0.0/8', '10.255.1.2')).toBe(true);
    expect(cidrContains('10.0.0.0/8', '11.0.0.0')).toBe(false);
    expect(cidrContains('192.168.1.0/25', '192.168.1.127')).toBe(true);
    expect(cidrContains('192.168.1.0/25', '192.168.1.128')).toBe(false);
    expect(cidrContains('0.0.0.0/0', '1.2.3.4')).toBe(true);
    expect(cidrContains('2001:db8::/32', '2001:db8:ffff::1')).toBe(true);
    expect(cidrContains('2001:db8::/32', '2001:db9::1')).toBe(false);
    expect(cidrContains(parseCIDR('10.0.0.0/8')!, ipToBytes('10.1.1.1'))).toBe(true);
  });

  it('never matches across families or on invalid input', () => {
    expect(cidrContains('::/0', '10.0.0.1')).toBe(false);
    expect(cidrContains('0.0.0.0/0', '::1')).toBe(false);
    expect(cidrContains('bogus', '10.0.0.1')).toBe(false);
    expect(cidrContains('10.0.0.0/8', 'bogus')).toBe(false);
  });
});
