// Netlink message framing, pure: the header, its flags and message types, the writer every family's requests are
// built with, and the splitting and reading of replies. Encoders and decoders are mirror images (moby/ipvs's
// netlink_linux.go style), so every message svcplane sends can be decoded back in tests. The addon only numbers,
// sends and matches them (native/nl_transact.cc): it reads the kernel's NLMSG_ERROR acks and NLMSG_DONE ends of
// dumps itself and hands back only data messages, refusals as numbers.
//
// Layout (include/uapi/linux/netlink.h): nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid } then the
// payload (a family's fixed header, then attributes: attribute.ts), each part padded to 4 bytes. Netlink integers
// are host byte order (little-endian here); ports and addresses are network order.
import { AttributeDecoder, AttributeEncoder, align4 } from './attribute';

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
/** NLM_F_REPLACE on new requests; the same bit is NLM_F_NONREC on deletes. */
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;

/** Message types every family shares (below NLMSG_MIN_TYPE, 0x10). */
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLMSG_HDRLEN = 16;

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

/** A decoder for a message's attributes: those after its family's fixed header of `fixedLen` bytes. */
export function attributesOf(msg: Buffer, fixedLen: number): AttributeDecoder {
  return new AttributeDecoder(msg, NLMSG_HDRLEN + fixedLen, Math.min(msg.readUInt32LE(0), msg.length));
}

/** Consecutive netlink messages (a packed reply) as one Buffer view each. */
export function splitMessages(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= data.length) {
    const len = data.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > data.length) break;
    out.push(data.subarray(off, off + len));
    off += align4(len);
  }
  return out;
}

/**
 * Netlink messages written straight into one growable buffer: a sync's thousands of requests become one Buffer
 * handed to the addon in one call (NetlinkTransceiver.transactPacked), with no Buffer per attribute or message.
 * begin() a message, write its fixed header and attributes (AttributeEncoder's methods), end() it.
 */
export class NetlinkWriter extends AttributeEncoder {
  private msgStart = -1;
  /** Messages written (and ended). */
  count = 0;

  constructor(initial = 64 * 1024) {
    super(initial);
  }

  /** Starts a message: header with type and flags (seq and pid are the addon's). */
  begin(type: number, flags: number): this {
    if (this.msgStart >= 0) throw new Error('NetlinkWriter: end() the previous message first');
    const at = this.out.reserve(NLMSG_HDRLEN);
    this.msgStart = at;
    const b = this.out.buf;
    for (let i = at; i < at + NLMSG_HDRLEN; i++) b[i] = 0;
    b[at + 4] = type & 0xff;
    b[at + 5] = type >>> 8;
    b[at + 6] = flags & 0xff;
    b[at + 7] = flags >>> 8;
    return this;
  }

  /** Raw payload bytes (a fixed header such as genlmsghdr or ifaddrmsg), zero-padded to 4. */
  header(bytes: ArrayLike<number>): this {
    const n = align4(bytes.length);
    const at = this.out.reserve(n);
    const b = this.out.buf;
    for (let i = 0; i < bytes.length; i++) b[at + i] = bytes[i];
    for (let i = at + bytes.length; i < at + n; i++) b[i] = 0;
    return this;
  }

  /** Ends the message: its length goes into the header. */
  end(): this {
    if (this.msgStart < 0) throw new Error('NetlinkWriter: no message begun');
    this.out.patchU32(this.msgStart, this.out.length - this.msgStart);
    this.msgStart = -1;
    this.count++;
    return this;
  }

  /** Every message written so far (a view: do not write more while it is in use). */
  finish(): Buffer {
    if (this.msgStart >= 0) throw new Error('NetlinkWriter: a message is still open');
    return this.out.view();
  }
}

/** Writes one message with `write` and returns it as its own Buffer (tests, one-off requests). */
export function oneMessage(write: (w: NetlinkWriter) => void): Buffer {
  const w = new NetlinkWriter(256);
  write(w);
  return Buffer.from(w.finish());
}
