// The record stream shared with the addon (layout in native/nft_records.h): encoder for transactions and
// decoder for dumps, mirror images of each other. Integers are host order (as libnftnl's *_set_data wants).
import { RecordAction, RecordKind } from './constants';
import { grownBuffer } from '../../../netlink/writer';

const MAGIC = 0x424e5653;
const VERSION = 1;

/** A growable little buffer with typed appends. */
export class ByteWriter {
  private buf: Buffer;
  private len = 0;

  constructor(initial = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.len;
  }

  private ensure(n: number): void {
    if (this.len + n > this.buf.length) this.buf = grownBuffer(this.buf, this.len, n);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.len);
    this.len += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.len);
    this.len += 4;
  }
  bytes(b: Buffer): void {
    this.ensure(b.length);
    // Most are keys of a few bytes: TypedArray#set is several times cheaper than Buffer#copy for those.
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** Writes s as UTF-8 plus a NUL; returns the bytes written. */
  utf8z(s: string): number {
    this.ensure(s.length * 3 + 1);
    const n = this.buf.write(s, this.len, 'utf8');
    this.buf[this.len + n] = 0;
    this.len += n + 1;
    return n + 1;
  }
  /** Overwrites a u32 written earlier (for counts known only at the end). */
  patchU32(at: number, v: number): void {
    this.buf.writeUInt32LE(v >>> 0, at);
  }
  patchU16(at: number, v: number): void {
    this.buf.writeUInt16LE(v, at);
  }
  /** The bytes from `start` to the end, as a view (no copy) of the current backing buffer. */
  slice(start: number): Buffer {
    return this.buf.subarray(start, this.len);
  }
  /** A copy of what was written (the writer may be reused after reset()). */
  take(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
  view(): Buffer {
    return this.buf.subarray(0, this.len);
  }
  reset(): void {
    this.len = 0;
  }
}

/**
 * An attribute list being written: `u16 count | (u16 type | u32 len | bytes)*`. Attributes must be added in
 * ascending type order: that order is what makes a built rule and a dumped rule byte-comparable.
 */
export class AttrWriter {
  private countAt: number;
  private count = 0;
  private last = -1;

  constructor(private readonly w: ByteWriter) {
    this.countAt = w.length;
    w.u16(0);
  }

  private head(type: number, len: number): void {
    if (type <= this.last) throw new Error(`attribute ${type} written after ${this.last}: keep ascending order`);
    this.last = type;
    this.w.u16(type);
    this.w.u32(len);
    this.count++;
  }
  u32(type: number, v: number): this {
    this.head(type, 4);
    this.w.u32(v);
    return this;
  }
  /** A C string (NUL-terminated), written in place: no intermediate Buffer. */
  str(type: number, s: string): this {
    const lenAt = this.w.length + 2;
    this.head(type, 0);
    const n = this.w.utf8z(s);
    this.w.patchU32(lenAt, n);
    return this;
  }
  bytes(type: number, b: Buffer): this {
    this.head(type, b.length);
    this.w.bytes(b);
    return this;
  }
  end(): void {
    this.w.patchU16(this.countAt, this.count);
  }
}

export type AttrMap = Map<number, Buffer>;

export interface DecodedRecord {
  action: RecordAction;
  kind: RecordKind;
  family: number;
  nlflags: number;
  attrs: AttrMap;
  /** Expressions of a rule (attr 0 = name) or elements of a SETELEM record. */
  children: AttrMap[];
}

/** Writes a whole stream: header, then records; finish() patches the count. */
export class RecordStreamWriter {
  readonly w = new ByteWriter(1 << 20);
  private count = 0;

  constructor() {
    this.w.u32(MAGIC);
    this.w.u32(VERSION);
    this.w.u32(0);
  }

  get records(): number {
    return this.count;
  }

  /** Starts a record; the caller then writes its attrs (AttrWriter) and its tail. */
  begin(action: RecordAction, kind: RecordKind, family: number, nlflags: number): void {
    this.w.u8(action);
    this.w.u8(kind);
    this.w.u8(family);
    this.w.u8(0);
    this.w.u16(nlflags);
    this.w.u16(0);
    this.count++;
  }

  finish(): Buffer {
    this.w.patchU32(8, this.count);
    return this.w.view();
  }
}

class Reader {
  off = 0;
  constructor(private readonly b: Buffer) {}
  u8(): number {
    return this.b.readUInt8(this.off++);
  }
  u16(): number {
    const v = this.b.readUInt16LE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    const v = this.b.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  take(n: number): Buffer {
    if (this.off + n > this.b.length) throw new Error('record stream truncated');
    const v = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  attrs(): AttrMap {
    const n = this.u16();
    const m: AttrMap = new Map();
    for (let i = 0; i < n; i++) {
      const type = this.u16();
      const len = this.u32();
      m.set(type, this.take(len));
    }
    return m;
  }
  get done(): boolean {
    return this.off === this.b.length;
  }
}

export function decodeRecords(stream: Buffer): DecodedRecord[] {
  if (stream.length === 0) return [];
  const r = new Reader(stream);
  if (r.u32() !== MAGIC || r.u32() !== VERSION) throw new Error('not a svcplane record stream');
  const count = r.u32();
  const out: DecodedRecord[] = [];
  for (let i = 0; i < count; i++) {
    const action = r.u8() as RecordAction;
    const kind = r.u8() as RecordKind;
    const family = r.u8();
    r.u8();
    const nlflags = r.u16();
    r.u16();
    const attrs = r.attrs();
    const children: AttrMap[] = [];
    if (kind === RecordKind.Rule) {
      const n = r.u16();
      for (let j = 0; j < n; j++) children.push(r.attrs());
    } else if (kind === RecordKind.SetElem) {
      const n = r.u32();
      for (let j = 0; j < n; j++) children.push(r.attrs());
    }
    out.push({ action, kind, family, nlflags, attrs, children });
  }
  if (!r.done) throw new Error('trailing bytes in record stream');
  return out;
}

export function attrString(m: AttrMap, type: number): string | undefined {
  const b = m.get(type);
  if (!b) return undefined;
  const end = b.indexOf(0);
  return b.toString('utf8', 0, end < 0 ? b.length : end);
}

export function attrU32(m: AttrMap, type: number): number | undefined {
  const b = m.get(type);
  return b && b.length >= 4 ? b.readUInt32LE(0) : undefined;
}

export function attrI32(m: AttrMap, type: number): number | undefined {
  const b = m.get(type);
  return b && b.length >= 4 ? b.readInt32LE(0) : undefined;
}
