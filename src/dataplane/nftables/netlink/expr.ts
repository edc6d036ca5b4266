// Rule expressions, written straight into the record-stream form. A built rule is a "rule body": the bytes
// `u16 expr count | attrs*` that follow a rule record's own attributes. Two rule bodies are the same rule
// exactly when their bytes are equal, which is how the diff compares what we want with what is programmed.
//
// Each builder writes exactly the attributes the kernel reports back in a dump (e.g. nat's ADDR_MAX, which the
// kernel fills in from ADDR_MIN, and bitwise's OP), in ascending order, so that a dumped rule re-encoded by
// canonicalRuleBody() is byte-identical to the rule we built.
import * as os from 'node:os';
import {
  BITWISE, CMP, CT, DYNSET, EXPR_NAME, FIB, IMM, LOOKUP, MASQ, META, NAT, NUMGEN, PAYLOAD, REJECT,
  NFT_BITWISE_BOOL, NFT_CMP_EQ, NFT_CMP_NEQ, NFT_NG_RANDOM, NFT_REG_VERDICT,
} from './constants';
import { type AttrMap, RecordAttrWriter, RecordStreamReader } from '../../../native/recordStream';
import { GrowableBuffer } from '../../../netlink/buffer';

const LE = os.endianness() === 'LE';

/** A u32 as the kernel holds it in a register (host order): for marks, ct state, numgen, fib results. */
export function hostU32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  if (LE) b.writeUInt32LE(v >>> 0, 0);
  else b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/** Network-order u16 (ports as they sit in packets), zero-padded to `width` bytes. */
export function be16(v: number, width = 2): Buffer {
  const b = Buffer.alloc(width);
  b.writeUInt16BE(v, 0);
  return b;
}

/**
 * Registers as the kernel reports them (nft_dump_register): a 32-bit register that starts a 128-bit one is
 * shown as that 128-bit register (NFT_REG32_00 -> NFT_REG_1, NFT_REG32_04 -> NFT_REG_2). Same register, other
 * name; we write the kernel's name so built and dumped rules compare equal.
 */
export function reg(r: number): number {
  if (r < 8) return r;
  const idx = r - 8;
  return idx % 4 === 0 ? idx / 4 + 1 : r;
}

/** Attributes each expression reports back: the only ones compared (counters' values are not). */
const SIGNIFICANT: Record<string, readonly number[]> = {
  payload: [PAYLOAD.DREG, PAYLOAD.BASE, PAYLOAD.OFFSET, PAYLOAD.LEN],
  numgen: [NUMGEN.DREG, NUMGEN.MODULUS, NUMGEN.TYPE, NUMGEN.OFFSET],
  meta: [META.KEY, META.DREG, META.SREG],
  cmp: [CMP.SREG, CMP.OP, CMP.DATA],
  immediate: [IMM.DREG, IMM.DATA, IMM.VERDICT, IMM.CHAIN],
  bitwise: [BITWISE.SREG, BITWISE.DREG, BITWISE.LEN, BITWISE.MASK, BITWISE.XOR, BITWISE.OP],
  nat: [NAT.TYPE, NAT.FAMILY, NAT.REG_ADDR_MIN, NAT.REG_ADDR_MAX, NAT.REG_PROTO_MIN, NAT.REG_PROTO_MAX, NAT.FLAGS],
  lookup: [LOOKUP.SREG, LOOKUP.DREG, LOOKUP.SET, LOOKUP.FLAGS],
  dynset: [DYNSET.SREG_KEY, DYNSET.SREG_DATA, DYNSET.OP, DYNSET.TIMEOUT, DYNSET.SET_NAME],
  ct: [CT.DREG, CT.KEY, CT.DIR, CT.SREG],
  reject: [REJECT.TYPE, REJECT.CODE],
  masq: [MASQ.FLAGS, MASQ.REG_PROTO_MIN, MASQ.REG_PROTO_MAX],
  fib: [FIB.DREG, FIB.RESULT, FIB.FLAGS],
  counter: [],
};

export type Verdict = { kind: 'accept' | 'drop' | 'return' | 'continue' } | { kind: 'jump' | 'goto'; chain: string };

export function verdictCode(v: Verdict): number {
  switch (v.kind) {
    case 'accept': return 1;
    case 'drop': return 0;
    case 'continue': return -1;
    case 'return': return -5;
    case 'jump': return -3;
    case 'goto': return -4;
  }
}

// Rule bodies are written into shared slabs and handed out as views: a 30k-Service sync builds ~10^5 rules, and
// one allocation per rule showed up as most of its garbage-collection time. A full slab is simply left to the
// views that still point into it; a fresh one takes over.
const SLAB_BYTES = 1 << 20;
let slab = new GrowableBuffer(SLAB_BYTES);
let slabInUse = false;

const NAME_BYTES = new Map<string, Buffer>();
function nameBytes(name: string): Buffer {
  let b = NAME_BYTES.get(name);
  if (!b) NAME_BYTES.set(name, (b = Buffer.from(name + '\0', 'utf8')));
  return b;
}

/** Builds one rule body; body() returns it. Build one rule at a time (body() before the next builder). */
export class RuleBuilder {
  private readonly w: GrowableBuffer;
  private readonly start: number;
  private count = 0;

  constructor() {
    if (slabInUse) throw new Error('RuleBuilder: finish the previous rule (body()) before starting another');
    slabInUse = true;
    if (slab.length > SLAB_BYTES - 8192) slab = new GrowableBuffer(SLAB_BYTES);
    this.w = slab;
    this.start = slab.length;
    this.w.u16(0);
  }

  private expr(name: string): RecordAttrWriter {
    this.count++;
    return new RecordAttrWriter(this.w).bytes(EXPR_NAME, nameBytes(name));
  }

  payload(dreg: number, base: number, offset: number, len: number): this {
    const a = this.expr('payload');
    a.u32(PAYLOAD.DREG, reg(dreg)).u32(PAYLOAD.BASE, base).u32(PAYLOAD.OFFSET, offset).u32(PAYLOAD.LEN, len).end();
    return this;
  }
  metaGet(key: number, dreg: number): this {
    this.expr('meta').u32(META.KEY, key).u32(META.DREG, reg(dreg)).end();
    return this;
  }
  metaSet(key: number, sreg: number): this {
    this.expr('meta').u32(META.KEY, key).u32(META.SREG, reg(sreg)).end();
    return this;
  }
  cmp(sreg: number, op: 'eq' | 'neq', data: Buffer): this {
    this.expr('cmp').u32(CMP.SREG, reg(sreg)).u32(CMP.OP, op === 'eq' ? NFT_CMP_EQ : NFT_CMP_NEQ).bytes(CMP.DATA, data).end();
    return this;
  }
  /** dreg = (sreg & mask) ^ xor */
  bitwise(sreg: number, dreg: number, mask: Buffer, xor: Buffer): this {
    this.expr('bitwise')
      .u32(BITWISE.SREG, reg(sreg)).u32(BITWISE.DREG, reg(dreg)).u32(BITWISE.LEN, mask.length)
      .bytes(BITWISE.MASK, mask).bytes(BITWISE.XOR, xor).u32(BITWISE.OP, NFT_BITWISE_BOOL).end();
    return this;
  }
  lookup(set: string, sreg: number, dreg?: number, invert = false): this {
    const a = this.expr('lookup').u32(LOOKUP.SREG, reg(sreg));
    if (dreg !== undefined) a.u32(LOOKUP.DREG, reg(dreg));
    a.str(LOOKUP.SET, set).u32(LOOKUP.FLAGS, invert ? 1 : 0).end();
    return this;
  }
  immediateData(dreg: number, data: Buffer): this {
    this.expr('immediate').u32(IMM.DREG, reg(dreg)).bytes(IMM.DATA, data).end();
    return this;
  }
  verdict(v: Verdict): this {
    const a = this.expr('immediate').u32(IMM.DREG, NFT_REG_VERDICT).u32(IMM.VERDICT, verdictCode(v));
    if (v.kind === 'jump' || v.kind === 'goto') a.str(IMM.CHAIN, v.chain);
    a.end();
    return this;
  }
  /** Adds (op 0) or refreshes (op 1, adding if missing) the element keyed by sregKey, with its own timeout. */
  dynset(op: number, set: string, sregKey: number, timeoutMs: number): this {
    const t = Buffer.allocUnsafe(8);
    if (LE) t.writeBigUInt64LE(BigInt(timeoutMs));
    else t.writeBigUInt64BE(BigInt(timeoutMs));
    this.expr('dynset').u32(DYNSET.SREG_KEY, reg(sregKey)).u32(DYNSET.OP, op).bytes(DYNSET.TIMEOUT, t).str(DYNSET.SET_NAME, set).end();
    return this;
  }
  numgenRandom(dreg: number, modulus: number): this {
    this.expr('numgen').u32(NUMGEN.DREG, reg(dreg)).u32(NUMGEN.MODULUS, modulus).u32(NUMGEN.TYPE, NFT_NG_RANDOM)
      .u32(NUMGEN.OFFSET, 0).end();
    return this;
  }
  /** Address in regAddr (and port in regProto if given); min and max equal, as the kernel reports them. */
  nat(type: number, family: number, regAddr: number, regProto: number | undefined, flags: number): this {
    const a = this.expr('nat').u32(NAT.TYPE, type).u32(NAT.FAMILY, family).u32(NAT.REG_ADDR_MIN, reg(regAddr))
      .u32(NAT.REG_ADDR_MAX, reg(regAddr));
    if (regProto !== undefined) a.u32(NAT.REG_PROTO_MIN, reg(regProto)).u32(NAT.REG_PROTO_MAX, reg(regProto));
    a.u32(NAT.FLAGS, flags).end();
    return this;
  }
  masquerade(flags: number): this {
    const a = this.expr('masq');
    if (flags) a.u32(MASQ.FLAGS, flags);
    a.end();
    return this;
  }
  reject(type: number, code?: number): this {
    const a = this.expr('reject').u32(REJECT.TYPE, type);
    // The ICMP code is a u8 attribute (NFTA_REJECT_ICMP_CODE).
    if (code !== undefined) a.bytes(REJECT.CODE, Buffer.from([code]));
    a.end();
    return this;
  }
  fib(dreg: number, result: number, flags: number): this {
    this.expr('fib').u32(FIB.DREG, reg(dreg)).u32(FIB.RESULT, result).u32(FIB.FLAGS, flags).end();
    return this;
  }
  ctGet(key: number, dreg: number): this {
    this.expr('ct').u32(CT.DREG, reg(dreg)).u32(CT.KEY, key).end();
    return this;
  }

  /** The finished rule body (a view into a slab that is never written again at these offsets). */
  body(): Buffer {
    slabInUse = false;
    this.w.patchU16(this.start, this.count);
    const b = this.w.slice(this.start);
    // If the slab grew (reallocated) while this rule was written, earlier views still point at the old
    // buffer, which stays valid; this view points at the new one.
    return b;
  }
}

/** Re-encodes a dumped rule's expressions with only their significant attributes: comparable to a built body. */
export function canonicalRuleBody(exprs: AttrMap[]): Buffer {
  const w = new GrowableBuffer(256);
  w.u16(exprs.length);
  for (const e of exprs) {
    const nameBuf = e.get(EXPR_NAME);
    const name = nameBuf ? nameBuf.toString('utf8', 0, Math.max(0, nameBuf.indexOf(0))) : '?';
    const a = new RecordAttrWriter(w).bytes(EXPR_NAME, nameBuf ?? Buffer.from('?\0'));
    const keep = SIGNIFICANT[name];
    const types = keep ?? [...e.keys()].filter((t) => t !== EXPR_NAME).sort((x, y) => x - y);
    for (const t of types) {
      const v = e.get(t);
      if (v) a.bytes(t, v);
    }
    a.end();
  }
  return w.take();
}

/** Decodes a rule body into expression attribute maps (for status/explain and tests). */
export function parseRuleBody(body: Buffer): AttrMap[] {
  return new RecordStreamReader(body).ruleBody();
}
