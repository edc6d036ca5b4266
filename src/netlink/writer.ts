// Netlink messages written straight into one growable buffer: a sync's thousands of requests become one Buffer
// handed to the addon in one call (NetlinkTransceiver.transactPacked), with no Buffer per attribute or message.
// Layout as in message.ts (the decoders there read what this writes): nlmsghdr, payload, attributes, each padded
// to 4 bytes; integers in host order (little-endian here), ports and addresses in network order.
import { ipToBytes } from '../model/ip';
import { NLA_F_NESTED, NLA_HDRLEN, NLMSG_HDRLEN } from './message';

const align4 = (n: number) => (n + 3) & ~3;

/** A copy of buf's first `used` bytes in a buffer doubled until `need` more fit (amortised O(1) appends). */
export function grownBuffer(buf: Buffer, used: number, need: number): Buffer {
  let size = buf.length * 2;
  while (size < used + need) size *= 2;
  const next = Buffer.allocUnsafe(size);
  buf.copy(next, 0, 0, used);
  return next;
}

export class NetlinkWriter {
  private buf: Buffer;
  private len = 0;
  private msgStart = -1;
  /** Messages written (and ended). */
  count = 0;

  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private room(n: number): void {
    if (this.len + n > this.buf.length) this.buf = grownBuffer(this.buf, this.len, n);
  }

  /** Starts a message: header with type and flags (seq and pid are the addon's). */
  begin(type: number, flags: number): this {
    if (this.msgStart >= 0) throw new Error('NetlinkWriter: end() the previous message first');
    this.room(NLMSG_HDRLEN);
    this.msgStart = this.len;
    const b = this.buf;
    for (let i = this.len; i < this.len + NLMSG_HDRLEN; i++) b[i] = 0;
    b[this.len + 4] = type & 0xff;
    b[this.len + 5] = type >>> 8;
    b[this.len + 6] = flags & 0xff;
    b[this.len + 7] = flags >>> 8;
    this.len += NLMSG_HDRLEN;
    return this;
  }

  /** Raw payload bytes (a fixed header such as genlmsghdr or ifaddrmsg), zero-padded to 4. */
  header(bytes: ArrayLike<number>): this {
    const n = align4(bytes.length);
    this.room(n);
    for (let i = 0; i < bytes.length; i++) this.buf[this.len + i] = bytes[i];
    for (let i = this.len + bytes.length; i < this.len + n; i++) this.buf[i] = 0;
    this.len += n;
    return this;
  }

  /** generic netlink header: cmd, version, reserved. */
  genl(cmd: number, version: number): this {
    return this.header([cmd, version, 0, 0]);
  }

  private attrHead(type: number, valueLen: number): number {
    const total = align4(NLA_HDRLEN + valueLen);
    this.room(total);
    const at = this.len;
    const b = this.buf;
    b[at] = (NLA_HDRLEN + valueLen) & 0xff;
    b[at + 1] = (NLA_HDRLEN + valueLen) >>> 8;
    b[at + 2] = type & 0xff;
    b[at + 3] = type >>> 8;
    // Zero the padding (the value is written by the caller); fill() costs more than this for 0-3 bytes.
    for (let i = at + NLA_HDRLEN + valueLen; i < at + total; i++) b[i] = 0;
    this.len += total;
    return at + NLA_HDRLEN;
  }

  // Each writer takes the offset first and only then reads this.buf: attrHead may grow (replace) the buffer.
  u8(type: number, v: number): this {
    const at = this.attrHead(type, 1);
    this.buf[at] = v & 0xff;
    return this;
  }

  u16(type: number, v: number): this {
    const at = this.attrHead(type, 2);
    this.buf[at] = v & 0xff;
    this.buf[at + 1] = (v >>> 8) & 0xff;
    return this;
  }

  be16(type: number, v: number): this {
    const at = this.attrHead(type, 2);
    this.buf[at] = (v >>> 8) & 0xff;
    this.buf[at + 1] = v & 0xff;
    return this;
  }

  u32(type: number, v: number): this {
    const at = this.attrHead(type, 4);
    this.buf.writeUInt32LE(v >>> 0, at);
    return this;
  }

  /** A u32 in network order (ctnetlink's CTA_ID). */
  u32be(type: number, v: number): this {
    const at = this.attrHead(type, 4);
    this.buf.writeUInt32BE(v >>> 0, at);
    return this;
  }

  /** Two u32 in one attribute (IPVS's flags + mask). */
  u32pair(type: number, a: number, b: number): this {
    const at = this.attrHead(type, 8);
    this.buf.writeUInt32LE(a >>> 0, at);
    this.buf.writeUInt32LE(b >>> 0, at + 4);
    return this;
  }

  string(type: number, s: string): this {
    const n = Buffer.byteLength(s, 'utf8');
    const at = this.attrHead(type, n + 1);
    this.buf.write(s, at, 'utf8');
    this.buf[at + n] = 0;
    return this;
  }

  binary(type: number, b: Uint8Array): this {
    const at = this.attrHead(type, b.length);
    this.buf.set(b, at);
    return this;
  }

  /**
   * An address attribute of `width` bytes (16 for IPVS's union nf_inet_addr, else its own length), parsed in
   * place: dotted IPv4 text costs no allocation (this runs for every request of a 10k-Service sync).
   */
  ip(type: number, ip: string, width?: number): this {
    const v6 = ip.includes(':');
    const w = width ?? (v6 ? 16 : 4);
    const at = this.attrHead(type, w);
    for (let i = at; i < at + w; i++) this.buf[i] = 0;
    if (v6) {
      this.buf.set(ipToBytes(ip), at);
      return this;
    }
    let v = 0;
    let o = at;
    for (let i = 0; i < ip.length; i++) {
      const c = ip.charCodeAt(i);
      if (c === 46) {
        this.buf[o++] = v;
        v = 0;
      } else v = v * 10 + c - 48;
    }
    this.buf[o] = v;
    return this;
  }

  /** Bytes already encoded as attributes (see oneAttrs), copied as they are. */
  raw(bytes: Uint8Array): this {
    this.room(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  /** Opens a nested attribute; close it with nestEnd(the returned offset). */
  nestStart(type: number): number {
    this.room(NLA_HDRLEN);
    const at = this.len;
    this.buf.writeUInt16LE(type | NLA_F_NESTED, at + 2);
    this.len += NLA_HDRLEN;
    return at;
  }

  nestEnd(at: number): this {
    this.buf.writeUInt16LE(this.len - at, at);
    return this;
  }

  /** Ends the message: its length goes into the header. */
  end(): this {
    if (this.msgStart < 0) throw new Error('NetlinkWriter: no message begun');
    this.buf.writeUInt32LE(this.len - this.msgStart, this.msgStart);
    this.msgStart = -1;
    this.count++;
    return this;
  }

  get bytes(): number {
    return this.len;
  }

  /** Every message written so far (a view: do not write more while it is in use). */
  finish(): Buffer {
    if (this.msgStart >= 0) throw new Error('NetlinkWriter: a message is still open');
    return this.buf.subarray(0, this.len);
  }
}

/** Writes one message with `write` and returns it as its own Buffer (tests, one-off requests). */
export function oneMessage(write: (w: NetlinkWriter) => void): Buffer {
  const w = new NetlinkWriter(256);
  write(w);
  return Buffer.from(w.finish());
}

/** Attributes written with `write`, outside any message, as their own Buffer (for NetlinkWriter.raw). */
export function oneAttrs(write: (w: NetlinkWriter) => void): Buffer {
  const w = new NetlinkWriter(64);
  write(w);
  return Buffer.from(w.finish());
}
