// Netlink messages and attributes, pure: the encode and decode halves are mirror images (moby/ipvs's
// netlink_linux.go style), so every message svcplane sends can be decoded back in tests. The addon only numbers,
// sends and matches them (native/nl_transact.cc).
//
// Layout (include/uapi/linux/netlink.h): nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid } then the
// payload, each part padded to 4 bytes; attributes are { u16 len; u16 type; value } with NLA_F_NESTED on nests.
// Netlink integers are host byte order (little-endian here); ports and addresses are network order.

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

const align4 = (n: number) => (n + 3) & ~3;

/** Builds a run of attributes (and nests) into one buffer. */
export class AttrWriter {
  private parts: Buffer[] = [];
  private size = 0;

  private push(type: number, value: Buffer): this {
    const len = NLA_HDRLEN + value.length;
    const b = Buffer.alloc(align4(len));
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(type, 2);
    value.copy(b, NLA_HDRLEN);
    this.parts.push(b);
    this.size += b.length;
    return this;
  }

  u8(type: number, v: number): this {
    return this.push(type, Buffer.from([v & 0xff]));
  }

  u16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return this.push(type, b);
  }

  /** A 16-bit value in network byte order (ports). */
  be16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return this.push(type, b);
  }

  u32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.push(type, b);
  }

  u64(type: number, v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return this.push(type, b);
  }

  /** A NUL-terminated string. */
  string(type: number, s: string): this {
    return this.push(type, Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]));
  }

  binary(type: number, b: Buffer): this {
    return this.push(type, b);
  }

  nested(type: number, build: (w: AttrWriter) => void): this {
    const w = new AttrWriter();
    build(w);
    return this.push(type | NLA_F_NESTED, w.bytes());
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }
}

/** A whole netlink message: header (seq and pid left 0: the addon sets them) and payload. */
export function nlmsg(type: number, flags: number, payload: Buffer): Buffer {
  const len = NLMSG_HDRLEN + payload.length;
  const b = Buffer.alloc(align4(len));
  b.writeUInt32LE(len, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  payload.copy(b, NLMSG_HDRLEN);
  return b;
}

export interface NlHeader {
  len: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

export function parseHeader(msg: Buffer): NlHeader {
  return { len: msg.readUInt32LE(0), type: msg.readUInt16LE(4), flags: msg.readUInt16LE(6), seq: msg.readUInt32LE(8), pid: msg.readUInt32LE(12) };
}

/** Attributes by type (NLA_F_* bits masked off); a repeated type keeps every value in order. */
export class Attrs {
  private readonly byType = new Map<number, Buffer[]>();

  constructor(buf: Buffer, start = 0, end = buf.length) {
    let off = start;
    while (off + NLA_HDRLEN <= end) {
      const len = buf.readUInt16LE(off);
      if (len < NLA_HDRLEN || off + len > end) break;
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
      const value = buf.subarray(off + NLA_HDRLEN, off + len);
      const list = this.byType.get(type);
      if (list) list.push(value);
      else this.byType.set(type, [value]);
      off += align4(len);
    }
  }

  has(type: number): boolean {
    return this.byType.has(type);
  }

  get(type: number): Buffer | undefined {
    return this.byType.get(type)?.[0];
  }

  all(type: number): Buffer[] {
    return this.byType.get(type) ?? [];
  }

  u8(type: number): number | undefined {
    return this.get(type)?.readUInt8(0);
  }

  u16(type: number): number | undefined {
    return this.get(type)?.readUInt16LE(0);
  }

  be16(type: number): number | undefined {
    return this.get(type)?.readUInt16BE(0);
  }

  u32(type: number): number | undefined {
    return this.get(type)?.readUInt32LE(0);
  }

  u64(type: number): bigint | undefined {
    const b = this.get(type);
    return b && b.length >= 8 ? b.readBigUInt64LE(0) : undefined;
  }

  string(type: number): string | undefined {
    const b = this.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
  }

  nested(type: number): Attrs | undefined {
    const b = this.get(type);
    return b ? new Attrs(b) : undefined;
  }
}
