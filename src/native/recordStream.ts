// The record stream: the addon's own binary format for nftables objects, in both directions across the JS/C++
// boundary. It is NOT netlink (that is src/netlink): TypeScript writes a transaction as records (NftTransaction),
// the addon turns each record into one libnftnl object and one netlink message; a dump comes back as the same
// records (action NEW), so encode and decode are mirror images and a dump can be replayed as a batch. The C++ side
// is native/nft_records.h and .cc; this file is its TypeScript writer and reader.
//
// Why a format of its own, rather than netlink messages or JS objects: a 30k-Service sync is ~10^6 attributes, and
// reading them one N-API property at a time costs more than the kernel's whole commit, while one flat buffer
// crosses N-API in one call. It is cheaper to produce and walk than netlink (no alignment, no nesting: a rule's
// expressions and a set's elements are counted lists), and it carries libnftnl attribute numbers with raw values,
// so the addon stays generic: no knowledge of expressions, rules or Kubernetes. It is versioned: a reader refuses a
// stream whose magic or version it does not know, so the two sides never silently disagree on the layout.
//
// Layout (little-endian: integers host order, as libnftnl's nftnl_*_set_data wants):
//   stream := u32 magic 'SVNB' | u32 version (1) | u32 record count | record*
//   record := u8 action | u8 kind | u8 family | u8 0 | u16 nlmsg flags | u16 0 | attrs | tail
//   attrs  := u16 count | (u16 type | u32 len | len bytes)*
//   tail   := RULE: u16 expr count | attrs* (attr 0 = NFTNL_EXPR_NAME)
//             SETELEM: u32 element count | attrs*
//             others: nothing
import { GrowableBuffer } from '../netlink/buffer';

/** "SVNB" read as a little-endian u32 (kRecordMagic). */
const MAGIC = 0x424e5653;
const VERSION = 1;

export const enum RecordAction {
  New = 1,
  Del = 2,
}
export const enum RecordKind {
  Table = 1,
  Chain = 2,
  Rule = 3,
  Set = 4,
  SetElem = 5,
}

/**
 * A record's attribute list being written: `u16 count | (u16 type | u32 len | bytes)*`. Attributes must be added in
 * ascending type order: that order is what makes a built rule and a dumped rule byte-comparable.
 */
export class RecordAttrWriter {
  private countAt: number;
  private count = 0;
  private last = -1;

  constructor(private readonly w: GrowableBuffer) {
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
  // Starts small: every nftables transaction has one, and a partial sync's stream is a few KiB. A 1 MiB start made
  // each one-Service sync 1 MiB of external memory, so V8 ran a GC ("external memory pressure") every ~30 syncs,
  // inside the next sync's timing. A full sync's stream doubles its way up (copies total < its final size).
  readonly w = new GrowableBuffer(1 << 14);
  private count = 0;

  constructor() {
    this.w.u32(MAGIC);
    this.w.u32(VERSION);
    this.w.u32(0);
  }

  get records(): number {
    return this.count;
  }

  /** Starts a record; the caller then writes its attrs (RecordAttrWriter) and its tail. */
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

/** Reads a whole stream (a dump from the addon; a transaction read back by the fake and tests). */
export class RecordStreamReader {
  private off = 0;

  constructor(private readonly b: Buffer) {}

  /** Every record; throws on another magic or version, a truncated stream, or trailing bytes. */
  records(): DecodedRecord[] {
    if (this.b.length === 0) return [];
    if (this.u32() !== MAGIC || this.u32() !== VERSION) throw new Error('not a svcplane record stream');
    const count = this.u32();
    const out: DecodedRecord[] = [];
    for (let i = 0; i < count; i++) {
      const action = this.u8() as RecordAction;
      const kind = this.u8() as RecordKind;
      const family = this.u8();
      this.u8();
      const nlflags = this.u16();
      this.u16();
      const attrs = this.attrs();
      const children: AttrMap[] = [];
      if (kind === RecordKind.Rule) {
        children.push(...this.ruleBody());
      } else if (kind === RecordKind.SetElem) {
        const n = this.u32();
        for (let j = 0; j < n; j++) children.push(this.attrs());
      }
      out.push({ action, kind, family, nlflags, attrs, children });
    }
    if (this.off !== this.b.length) throw new Error('trailing bytes in record stream');
    return out;
  }

  /** A rule's tail (a "rule body", as RuleBuilder writes it): `u16 expr count | attrs*`. */
  ruleBody(): AttrMap[] {
    const n = this.u16();
    const exprs: AttrMap[] = [];
    for (let j = 0; j < n; j++) exprs.push(this.attrs());
    return exprs;
  }

  private u8(): number {
    return this.b.readUInt8(this.off++);
  }
  private u16(): number {
    const v = this.b.readUInt16LE(this.off);
    this.off += 2;
    return v;
  }
  private u32(): number {
    const v = this.b.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  private take(n: number): Buffer {
    if (this.off + n > this.b.length) throw new Error('record stream truncated');
    const v = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  private attrs(): AttrMap {
    const n = this.u16();
    const m: AttrMap = new Map();
    for (let i = 0; i < n; i++) {
      const type = this.u16();
      const len = this.u32();
      m.set(type, this.take(len));
    }
    return m;
  }
}

export function decodeRecords(stream: Buffer): DecodedRecord[] {
  return new RecordStreamReader(stream).records();
}

// A record's attributes by type: a missing attribute, or one too short for the type, reads as undefined.
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
