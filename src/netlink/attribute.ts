// Netlink attributes (include/uapi/linux/netlink.h): { u16 len; u16 type; value } padded to 4 bytes, with
// NLA_F_NESTED on nests. The one attribute codec of svcplane, after mdlayher/netlink's AttributeEncoder and
// AttributeDecoder (attribute.go): every family's encoder writes through AttributeEncoder (NetlinkWriter, in
// message.ts, is one with message framing around it) and every decoder reads through AttributeDecoder.
//
// Integers are host order (little-endian here) unless a family says otherwise: nf_tables and parts of ctnetlink
// use network order (the be* methods), and ports and addresses are always network order.
//
// Decoding follows attribute.go: iterate with next(), read the current attribute with a typed getter that checks
// its length exactly. Short or malformed input never throws mid-parse: the first problem is kept as a sticky
// error, iteration stops and later getters return zero values ('' , 0, 0n, an empty buffer); the caller checks
// err() once at the end.
import { bytesToIp, ipToBytes } from '../model/ip';
import { GrowableBuffer } from './buffer';

export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** NLA_ALIGN and NLMSG_ALIGN: every attribute and message is padded to 4 bytes. */
export const align4 = (n: number) => (n + 3) & ~3;

/** Writes attributes (and nests) into one growable buffer; NetlinkWriter adds message framing. */
export class AttributeEncoder {
  protected readonly out: GrowableBuffer;

  constructor(initial = 256) {
    this.out = new GrowableBuffer(initial);
  }

  /** Writes an attribute's header and padding; returns where its `valueLen` bytes of value go. */
  private head(type: number, valueLen: number): number {
    const total = align4(NLA_HDRLEN + valueLen);
    const at = this.out.reserve(total);
    const b = this.out.buf;
    b[at] = (NLA_HDRLEN + valueLen) & 0xff;
    b[at + 1] = (NLA_HDRLEN + valueLen) >>> 8;
    b[at + 2] = type & 0xff;
    b[at + 3] = type >>> 8;
    // Zero the padding (the value is written by the caller); fill() costs more than this for 0-3 bytes.
    for (let i = at + NLA_HDRLEN + valueLen; i < at + total; i++) b[i] = 0;
    return at + NLA_HDRLEN;
  }

  // Each writer takes the offset first and only then reads this.out.buf: head() may grow (replace) the buffer.
  u8(type: number, v: number): this {
    const at = this.head(type, 1);
    this.out.buf[at] = v & 0xff;
    return this;
  }

  u16(type: number, v: number): this {
    const at = this.head(type, 2);
    this.out.buf[at] = v & 0xff;
    this.out.buf[at + 1] = (v >>> 8) & 0xff;
    return this;
  }

  /** A u16 in network order (ports). */
  be16(type: number, v: number): this {
    const at = this.head(type, 2);
    this.out.buf[at] = (v >>> 8) & 0xff;
    this.out.buf[at + 1] = v & 0xff;
    return this;
  }

  u32(type: number, v: number): this {
    const at = this.head(type, 4);
    this.out.buf.writeUInt32LE(v >>> 0, at);
    return this;
  }

  /** A u32 in network order (ctnetlink's CTA_ID, nf_tables' integers); negative values as their two's complement. */
  be32(type: number, v: number): this {
    const at = this.head(type, 4);
    this.out.buf.writeUInt32BE(v >>> 0, at);
    return this;
  }

  /** Two u32 in one attribute (IPVS's flags + mask). */
  u32pair(type: number, a: number, b: number): this {
    const at = this.head(type, 8);
    this.out.buf.writeUInt32LE(a >>> 0, at);
    this.out.buf.writeUInt32LE(b >>> 0, at + 4);
    return this;
  }

  u64(type: number, v: bigint): this {
    const at = this.head(type, 8);
    this.out.buf.writeBigUInt64LE(v, at);
    return this;
  }

  be64(type: number, v: bigint): this {
    const at = this.head(type, 8);
    this.out.buf.writeBigUInt64BE(v, at);
    return this;
  }

  /** A NUL-terminated string. */
  string(type: number, s: string): this {
    const n = Buffer.byteLength(s, 'utf8');
    const at = this.head(type, n + 1);
    this.out.buf.write(s, at, 'utf8');
    this.out.buf[at + n] = 0;
    return this;
  }

  bytes(type: number, b: Uint8Array): this {
    const at = this.head(type, b.length);
    this.out.buf.set(b, at);
    return this;
  }

  /**
   * An address attribute of `width` bytes (16 for IPVS's union nf_inet_addr, else its own length), parsed in
   * place: dotted IPv4 text costs no allocation (this runs for every request of a 10k-Service sync).
   */
  ip(type: number, ip: string, width?: number): this {
    const v6 = ip.includes(':');
    const w = width ?? (v6 ? 16 : 4);
    const at = this.head(type, w);
    const b = this.out.buf;
    for (let i = at; i < at + w; i++) b[i] = 0;
    if (v6) {
      b.set(ipToBytes(ip), at);
      return this;
    }
    let v = 0;
    let o = at;
    for (let i = 0; i < ip.length; i++) {
      const c = ip.charCodeAt(i);
      if (c === 46) {
        b[o++] = v;
        v = 0;
      } else v = v * 10 + c - 48;
    }
    b[o] = v;
    return this;
  }

  /** Bytes already encoded as attributes (see encode()), copied as they are. */
  raw(bytes: Uint8Array): this {
    this.out.bytes(bytes);
    return this;
  }

  /** A nested attribute holding what `build` writes (NLA_F_NESTED set on its type). */
  nested(type: number, build: (e: this) => void): this {
    const at = this.nestStart(type);
    build(this);
    return this.nestEnd(at);
  }

  /** Opens a nested attribute; close it with nestEnd(the returned offset). */
  nestStart(type: number): number {
    const at = this.out.reserve(NLA_HDRLEN);
    this.out.buf.writeUInt16LE(type | NLA_F_NESTED, at + 2);
    return at;
  }

  nestEnd(at: number): this {
    this.out.patchU16(at, this.out.length - at);
    return this;
  }

  /** Bytes written so far. */
  get length(): number {
    return this.out.length;
  }

  /** What was written, as its own Buffer (attributes outside any message: for raw(), or tests). */
  encode(): Buffer {
    return this.out.take();
  }
}

/** Attributes written with `write`, outside any message, as their own Buffer (for raw()). */
export function encodeAttributes(write: (e: AttributeEncoder) => void): Buffer {
  const e = new AttributeEncoder(64);
  write(e);
  return e.encode();
}

/**
 * Reads attributes one at a time (mdlayher/netlink's AttributeDecoder): `while (d.next()) switch (d.type()) { ... }`,
 * then `d.err()`. Getters check the current attribute's length exactly and record the first problem as a sticky
 * error instead of throwing; after it, next() returns false and getters return zero values. Values are views of
 * the input (bytes(), nested decoders): nothing is copied.
 */
export class AttributeDecoder {
  private off: number;
  private rawType = -1;
  private at = 0;
  private n = 0;
  private error: Error | undefined;

  /** The attributes in buf[start, end). */
  constructor(private readonly buf: Buffer, start = 0, private readonly end = buf.length) {
    this.off = start;
    if (start > end) this.error = new Error(`netlink: ${end} bytes, shorter than the ${start} before the attributes (a message cut in its fixed header)`);
  }

  /** Moves to the next attribute; false at the end, or once an error was recorded. */
  next(): boolean {
    this.rawType = -1;
    if (this.error || this.off >= this.end) return false;
    if (this.end - this.off < NLA_HDRLEN) return this.stop(`netlink: ${this.end - this.off} trailing bytes, less than an attribute header`);
    const len = this.buf.readUInt16LE(this.off);
    if (len < NLA_HDRLEN || len > this.end - this.off) {
      return this.stop(`netlink: attribute of length ${len} at offset ${this.off} does not fit in the ${this.end - this.off} bytes left`);
    }
    this.rawType = this.buf.readUInt16LE(this.off + 2);
    this.at = this.off + NLA_HDRLEN;
    this.n = len - NLA_HDRLEN;
    this.off += align4(len);
    return true;
  }

  /** The current attribute's type, NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off. */
  type(): number {
    return this.rawType & NLA_TYPE_MASK;
  }

  /** The current attribute's NLA_F_NESTED and NLA_F_NET_BYTEORDER bits. */
  typeFlags(): number {
    return this.rawType & ~NLA_TYPE_MASK & 0xffff;
  }

  u8(): number {
    const at = this.fixed(1, 'u8');
    return at < 0 ? 0 : this.buf[at];
  }

  u16(): number {
    const at = this.fixed(2, 'u16');
    return at < 0 ? 0 : this.buf.readUInt16LE(at);
  }

  be16(): number {
    const at = this.fixed(2, 'be16');
    return at < 0 ? 0 : this.buf.readUInt16BE(at);
  }

  u32(): number {
    const at = this.fixed(4, 'u32');
    return at < 0 ? 0 : this.buf.readUInt32LE(at);
  }

  be32(): number {
    const at = this.fixed(4, 'be32');
    return at < 0 ? 0 : this.buf.readUInt32BE(at);
  }

  /** IPVS's flags + mask: two u32 in one attribute. */
  u32pair(): [number, number] {
    const at = this.fixed(8, 'u32 pair');
    return at < 0 ? [0, 0] : [this.buf.readUInt32LE(at), this.buf.readUInt32LE(at + 4)];
  }

  u64(): bigint {
    const at = this.fixed(8, 'u64');
    return at < 0 ? 0n : this.buf.readBigUInt64LE(at);
  }

  be64(): bigint {
    const at = this.fixed(8, 'be64');
    return at < 0 ? 0n : this.buf.readBigUInt64BE(at);
  }

  /** A string: the value up to its first NUL (or all of it, if it has none). */
  string(): string {
    if (!this.current('string')) return '';
    const v = this.buf.subarray(this.at, this.at + this.n);
    const nul = v.indexOf(0);
    return v.toString('utf8', 0, nul < 0 ? v.length : nul);
  }

  /** The value as it is (a view of the input). */
  bytes(): Buffer {
    if (!this.current('bytes')) return Buffer.alloc(0);
    return this.buf.subarray(this.at, this.at + this.n);
  }

  /** An address: exactly 4 (IPv4) or 16 (IPv6) bytes, as text. */
  ip(): string {
    if (!this.current('address')) return '';
    if (this.n !== 4 && this.n !== 16) {
      this.fail(`netlink: attribute ${this.type()} is not an IP address: ${this.n} bytes`);
      return '';
    }
    return bytesToIp(this.buf.subarray(this.at, this.at + this.n));
  }

  /** Decodes the current attribute's value as attributes with `fn`; an error inside becomes this decoder's. */
  nested(fn: (d: AttributeDecoder) => void): void {
    if (this.current('nest')) this.decode(this.buf.subarray(this.at, this.at + this.n), fn);
  }

  /**
   * Decodes `value` as attributes with `fn`, an error inside becoming this decoder's: for a nest kept with bytes()
   * and read once a later attribute has said what it holds (an nf_tables expression's data, by the expression's name).
   */
  decode(value: Buffer, fn: (d: AttributeDecoder) => void): void {
    if (this.error) return;
    const d = new AttributeDecoder(value);
    fn(d);
    const e = d.err();
    if (e) this.fail(e.message);
  }

  /** Records an error of the caller's own (a value out of range, an attribute missing): kept unless one came first. */
  fail(message: string): void {
    if (!this.error) this.error = new Error(message);
  }

  /** The first error met, if any: check it once, after decoding. */
  err(): Error | undefined {
    return this.error;
  }

  private stop(message: string): false {
    this.fail(message);
    this.rawType = -1;
    return false;
  }

  private current(what: string): boolean {
    if (this.error) return false;
    if (this.rawType < 0) {
      this.fail(`netlink: ${what} read with no current attribute (next() first)`);
      return false;
    }
    return true;
  }

  /** Where a value of exactly `width` bytes starts, or -1 (the error recorded). */
  private fixed(width: number, what: string): number {
    if (!this.current(what)) return -1;
    if (this.n !== width) {
      this.fail(`netlink: attribute ${this.type()} is not a ${what}: ${this.n} bytes`);
      return -1;
    }
    return this.at;
  }
}

/** Throws the decoder's sticky error, if it has one, as an Error naming what was being decoded. */
export function throwIfFailed(d: AttributeDecoder, what: string): void {
  const e = d.err();
  if (e) throw new Error(`decode ${what}: ${e.message}`);
}
