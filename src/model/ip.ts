// IP address and CIDR helpers. Pure, no I/O, no dependency on `net`.
//
// Parsing follows what kube-proxy accepts (k8s.io/utils/net ParseIPSloppy / ParseCIDRSloppy, i.e. Go's pre-1.17
// net.ParseIP): IPv4 octets with leading zeros are read as *decimal* ("010.0.0.1" is 10.0.0.1, never octal), and an
// IPv4-mapped IPv6 address ("::ffff:10.0.0.1") is an IPv4 address, as Go's ip.To4() makes it. Zones ("fe80::1%eth0")
// are rejected: Kubernetes never carries them. Canonical text is Go's net.IP.String(): dotted decimal for IPv4,
// RFC 5952 for IPv6 (lower case, no leading zeros, the longest run of two or more zero groups as "::").

import type { IPFamily } from './types';

export interface ParsedIP {
  family: IPFamily;
  /** 4 bytes for IPv4, 16 for IPv6, network order. */
  bytes: Buffer;
}

export interface CIDR {
  family: IPFamily;
  /** The network address (host bits cleared), 4 or 16 bytes. */
  network: Buffer;
  prefixLength: number;
}

function parseIPv4Bytes(text: string): Buffer | undefined {
  // A character loop, not split + regex: this runs for every address of a 10k-Service sync.
  const out = Buffer.allocUnsafe(4);
  let part = 0;
  let digits = 0;
  let v = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      // Up to 3 decimal digits; leading zeros allowed and decimal (ParseIPSloppy).
      if (digits === 0 || part === 3) return undefined;
      out[part++] = v;
      v = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (++digits > 3) return undefined;
      v = v * 10 + c - 48;
      if (v > 255) return undefined;
    } else return undefined;
  }
  if (part !== 3 || digits === 0) return undefined;
  out[3] = v;
  return out;
}

function parseGroups(side: string, allowTrailingV4: boolean): number[] | undefined {
  if (side === '') return [];
  const fields = side.split(':');
  const groups: number[] = [];
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (allowTrailingV4 && i === fields.length - 1 && f.includes('.')) {
      const v4 = parseIPv4Bytes(f);
      if (!v4) return undefined;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(f)) return undefined;
    groups.push(parseInt(f, 16));
  }
  return groups;
}

/** The 16 bytes of an IPv6 text, without IPv4-mapped folding (CIDRs need the raw form). */
function parseIPv6Bytes(text: string): Buffer | undefined {
  if (!text.includes(':') || text.includes('%')) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const left = parseGroups(halves[0], false);
    const right = parseGroups(halves[1], true);
    if (!left || !right) return undefined;
    // "::" must stand for at least one zero group (Go's netip rejects "1:2:3:4:5:6:7::8").
    const missing = 8 - left.length - right.length;
    if (missing < 1) return undefined;
    groups = [...left, ...new Array<number>(missing).fill(0), ...right];
  } else {
    const all = parseGroups(text, true);
    if (!all || all.length !== 8) return undefined;
    groups = all;
  }
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

function isV4Mapped(b: Buffer): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Parses IPv4 or IPv6 text; undefined when invalid. IPv4-mapped IPv6 comes back as IPv4 (as Go's To4()). */
export function parseIP(text: unknown): ParsedIP | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return undefined;
  if (!text.includes(':')) {
    const b = parseIPv4Bytes(text);
    return b ? { family: 4, bytes: b } : undefined;
  }
  const b = parseIPv6Bytes(text);
  if (!b) return undefined;
  if (isV4Mapped(b)) return { family: 4, bytes: Buffer.from(b.subarray(12)) };
  return { family: 6, bytes: b };
}

/**
 * Why an address can be no Service's (nor an endpoint's): what the API server's ValidateNonSpecialIP refuses
 * (unspecified, loopback, link-local unicast and multicast), and all multicast and the IPv4 broadcast address, which
 * no connection can be made to. Undefined for an ordinary unicast address. Programming one is harmful, not only
 * useless: a DNAT of 127.0.0.1:53/UDP takes the node's own resolver.
 */
export function specialAddress(p: ParsedIP): string | undefined {
  const b = p.bytes;
  if (p.family === 4) {
    if (b.every((x) => x === 0)) return 'the unspecified address';
    if (b[0] === 127) return 'a loopback address (127.0.0.0/8)';
    if (b[0] === 169 && b[1] === 254) return 'a link-local address (169.254.0.0/16)';
    if (b.every((x) => x === 255)) return 'the broadcast address';
    if (b[0] >= 224 && b[0] <= 239) return 'a multicast address (224.0.0.0/4)';
    return undefined;
  }
  if (b.every((x) => x === 0)) return 'the unspecified address';
  if (b.subarray(0, 15).every((x) => x === 0) && b[15] === 1) return 'the loopback address (::1)';
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) return 'a link-local address (fe80::/10)';
  if (b[0] === 0xff) return 'a multicast address (ff00::/8)';
  return undefined;
}

export function isValidIP(text: unknown): text is string {
  return parseIP(text) !== undefined;
}

export function ipFamily(text: unknown): IPFamily | undefined {
  return parseIP(text)?.family;
}

/** Canonical text of an IP, or undefined when invalid. */
export function canonicalIP(text: unknown): string | undefined {
  const p = parseIP(text);
  return p ? bytesToIp(p.bytes) : undefined;
}

/** 4 or 16 bytes in network order; throws on invalid text. */
export function ipToBytes(ip: string): Buffer {
  const p = parseIP(ip);
  if (!p) throw new Error(`invalid IP address ${JSON.stringify(ip)}`);
  return p.bytes;
}

/** Canonical text of 4 (IPv4) or 16 (IPv6) bytes; throws on any other length. */
export function bytesToIp(buf: Uint8Array): string {
  // join() makes a flat string; a template literal would keep a chain of cons strings alive with every stored address.
  if (buf.length === 4) return [buf[0], buf[1], buf[2], buf[3]].join('.');
  if (buf.length !== 16) throw new Error(`an IP address is 4 or 16 bytes, not ${buf.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((buf[i] << 8) | buf[i + 1]);
  // RFC 5952 4.2: compress the longest run of >= 2 zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return [hex.slice(0, bestStart).join(':'), hex.slice(bestStart + bestLen).join(':')].join('::');
}

/** Orders IPs: IPv4 before IPv6, then by bytes. */
export function compareIPBytes(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length;
  return Buffer.compare(a, b);
}

/**
 * Parses "addr/prefix". Host bits set are cleared ("10.1.2.3/8" is 10.0.0.0/8), as Go's ParseCIDR returns the
 * network. The family is the text's: "::ffff:10.0.0.0/104" is an IPv6 CIDR. Undefined when invalid.
 */
export function parseCIDR(text: unknown): CIDR | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const addr = text.slice(0, slash);
  const prefix = text.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(prefix)) return undefined;
  const prefixLength = Number(prefix);
  const v6 = addr.includes(':');
  const bytes = v6 ? parseIPv6Bytes(addr) : parseIPv4Bytes(addr);
  if (!bytes || prefixLength > bytes.length * 8) return undefined;
  return { family: v6 ? 6 : 4, network: maskBytes(bytes, prefixLength), prefixLength };
}

/** "network/prefix" in canonical text. */
export function cidrToString(cidr: CIDR): string {
  return `${bytesToIp(cidr.network)}/${cidr.prefixLength}`;
}

function maskBytes(bytes: Buffer, prefixLength: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, prefixLength - i * 8));
    out[i] &= bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
  }
  return out;
}

/** Whether IP (text or bytes) lies in CIDR (parsed or text). Different families never match; invalid input is false. */
export function cidrContains(cidr: CIDR | string, ip: string | Uint8Array): boolean {
  const c = typeof cidr === 'string' ? parseCIDR(cidr) : cidr;
  if (!c) return false;
  const bytes = typeof ip === 'string' ? parseIP(ip)?.bytes : Buffer.from(ip);
  if (!bytes || bytes.length !== c.network.length) return false;
  return maskBytes(bytes, c.prefixLength).equals(c.network);
}
