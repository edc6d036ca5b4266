// FakeNftClient: an in-memory, transactional NftClient (in the spirit of knftables' fake.go). run() decodes the
// transaction's record stream (the same bytes the addon would send) and applies every record to a copy of the
// tables with the kernel's semantics and errno codes, as measured on Linux 6.18 (test/contract/nft-client.contract.ts
// holds this fake and NetlinkNftClient to the same behaviour). A refused record rejects the whole batch with an
// NftTransactionError naming the record, and the committed tables are left as they were.
//
// Kernel behaviours mirrored (nf_tables_api.c):
//   table  NEW: created without NLM_F_CREATE; an existing one is fine unless NLM_F_EXCL (EEXIST), and takes the
//               message's flags when it carries them (dormant), keeps its own otherwise.
//          DEL: ENOENT if missing; removes everything in it.
//   chain  NEW: table must exist (ENOENT); an existing chain is fine unless EXCL (EEXIST); a hook given for an
//               existing regular chain, or a different hook/priority for a base chain, is EOPNOTSUPP; a different
//               base-chain type is EEXIST. A policy (accept, the default, or drop) is a base chain's only
//               (EOPNOTSUPP on a regular one); an existing base chain takes the message's policy when it has one.
//          DEL: ENOENT if missing; EBUSY while a rule jumps/goes to it or a verdict-map element points at it. Its
//               own rules do not keep it alive: they are deleted with it.
//   rule   NEW: needs NLM_F_CREATE (EINVAL); appends with NLM_F_APPEND, else prepends (NFTA_RULE_POSITION: after/
//               before that handle); NFTA_RULE_HANDLE + NLM_F_REPLACE replaces. A jump/goto to a missing chain or a
//               lookup of a missing set is ENOENT; a jump to a base chain EOPNOTSUPP; a lookup with a destination
//               register on a plain set EINVAL. Registers are tracked per rule, per 32-bit word, as the kernel does
//               since 6.12: loading a word no earlier expression of the rule stored is ENODATA.
//          DEL: with a handle deletes that rule (ENOENT if none); without, flushes the chain (or the whole table
//               when no chain is named).
//   set    NEW: needs NLM_F_CREATE to create (ENOENT); an existing set is fine unless EXCL (EEXIST) or its
//               flags/key/data differ (EEXIST). Key length 1..64, maps need a data type (EINVAL).
//          DEL: ENOENT if missing; EBUSY while a rule's lookup uses it.
//   element NEW: key length must equal the set's (EINVAL); map elements need data, plain ones must have none
//               (EINVAL); a verdict's chain must exist (ENOENT) and not be a base chain (EOPNOTSUPP). An element
//               whose key exists is fine when its data is the same (EEXIST with NLM_F_EXCL), EEXIST otherwise;
//               the element keeps its first comment (user data is not compared).
//          DEL: no elements flushes the set; a missing element is ENOENT.
//          Not the kernel's: a record whose element list would not fit one netlink attribute (u16 length) throws a
//          plain Error; the kernel would silently commit only the elements that fit (measured on 6.18).
//   older kernels: `new FakeNftClient({ lacks })` refuses the constructs of kernel.ts the way kernels without them
//          do (e.g. lacks ['map-membership'] is Debian 12's 6.1: a lookup without a destination register on a map is
//          EINVAL); a refused expression is named (index and name) as the kernel's extended ack names it.
//   check: every record applied to a copy, every refusal reported, nothing kept (a batch without its END).
import { constants as osConstants } from 'node:os';
import type { BatchErrorInfo, CheckResult, CommitResult } from '../../native';
import { RecordAction, RecordKind, attrI32, attrString, attrU32, decodeRecords, type AttrMap, type DecodedRecord } from '../../native/recordStream';
import { align4 as pad4 } from '../../netlink/attribute';
import { NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE } from '../../netlink/message';
import { NftTransactionError, type NftClient } from './client';
import { type ConstructId, refusalHint } from './kernel';
import {
  BITWISE, CHAIN, CMP, CT, DYNSET, ELEM, EXPR_NAME, FIB, IMM, LOOKUP, MASQ, META, NAT, NFPROTO_IPV4, NFPROTO_IPV6,
  NF_ACCEPT, NF_DROP, NFT_DATA_VERDICT, NFT_GOTO, NFT_JUMP, NFT_REG_VERDICT, NFT_SET_MAP,
  NFT_SET_CONCAT, NFT_SET_EVAL, NFT_SET_INTERVAL, NFT_SET_TIMEOUT, NF_INET_PRE_ROUTING, NUMGEN, PAYLOAD, REJECT, RULE, SET, TABLE, type NfFamily,
} from './netlink/constants';
import { canonicalRuleBody, parseRuleBody } from './netlink/expr';
import { decodeElementComment } from './netlink/udata';
import type { BaseChainSpec, ChainState, ElementState, SetSpec, TableState } from './objects';
import { elementKey, sameElement } from './objects';
import type { NftTransaction } from './transaction';

/** NFT_TABLE_F_MASK on 6.18: dormant, owner, persist. */
const TABLE_F_MASK = 0x7;
/** NFT_DATA_VALUE_MAXLEN: the longest key or data the kernel accepts. */
const DATA_VALUE_MAXLEN = 64;
/** What the kernel reports as a verdict map's data length: sizeof(struct nft_verdict) on a 64-bit kernel. */
export const NFT_VERDICT_DATA_LEN = 16;

type Errno = 'ENOENT' | 'EEXIST' | 'EBUSY' | 'EINVAL' | 'EOPNOTSUPP' | 'ENODATA' | 'ERANGE';
const STRERROR: Record<Errno, string> = {
  ENOENT: 'No such file or directory',
  EEXIST: 'File exists',
  EBUSY: 'Device or resource busy',
  EINVAL: 'Invalid argument',
  EOPNOTSUPP: 'Operation not supported',
  ENODATA: 'No data available',
  ERANGE: 'Numerical result out of range',
};

class Refusal extends Error {
  /** For a rule: the expression refused, as the kernel's extended ack names it (its position and name). */
  expression?: { index: number; name: string };
  constructor(readonly code: Errno, detail: string) {
    super(detail);
  }
}

function refuse(code: Errno, detail: string): never {
  throw new Refusal(code, detail);
}

/** What one rule references: chains it jumps/goes to and sets it looks up (kept to count uses). */
interface RuleMeta {
  handle: bigint;
  jumps: string[];
  lookups: string[];
}

/** A table as the fake holds it: the plain TableState plus what the kernel tracks besides (handles, uses). */
interface FakeTable extends TableState {
  nextHandle: bigint;
  /** chain -> its rules' handles and references, parallel to chains.get(chain).rules */
  meta: Map<string, RuleMeta[]>;
  /** Uses of a chain by jump/goto verdicts (rules and verdict-map elements): non-zero means EBUSY on delete. */
  chainUse: Map<string, number>;
  /** Uses of a set by lookup expressions. */
  setUse: Map<string, number>;
}

function tableKey(family: number, name: string): string {
  return `${family}\0${name}`;
}

export function familyName(family: number): string {
  return family === NFPROTO_IPV4 ? 'ip' : family === NFPROTO_IPV6 ? 'ip6' : `family${family}`;
}

/** Structure copied, values shared: rule bodies and element objects are never changed in place. */
function cloneTable(t: FakeTable): FakeTable {
  const chains = new Map<string, ChainState>();
  for (const [n, c] of t.chains) chains.set(n, { ...c, rules: [...c.rules] });
  const elements = new Map<string, Map<string, ElementState>>();
  for (const [n, m] of t.elements) elements.set(n, new Map(m));
  const meta = new Map<string, RuleMeta[]>();
  for (const [n, m] of t.meta) meta.set(n, [...m]);
  return {
    family: t.family,
    name: t.name,
    flags: t.flags,
    chains,
    sets: new Map(t.sets),
    elements,
    nextHandle: t.nextHandle,
    meta,
    chainUse: new Map(t.chainUse),
    setUse: new Map(t.setUse),
  };
}

function copyElement(e: ElementState): ElementState {
  const out: ElementState = { key: Buffer.from(e.key) };
  if (e.flags !== undefined) out.flags = e.flags;
  if (e.verdict !== undefined) out.verdict = e.verdict;
  if (e.chain !== undefined) out.chain = e.chain;
  if (e.data !== undefined) out.data = Buffer.from(e.data);
  if (e.comment !== undefined) out.comment = e.comment;
  return out;
}

/** A deep copy in exactly the shape NetlinkNftClient.dumpTable (decodeTable) returns. */
function exportTable(t: FakeTable): TableState {
  const out: TableState = { family: t.family, name: t.name, flags: t.flags ?? 0, chains: new Map(), sets: new Map(), elements: new Map() };
  for (const [n, c] of t.chains) {
    const chain: ChainState = { name: n, rules: c.rules.map((r) => Buffer.from(r)) };
    if (c.base) chain.base = { ...c.base };
    if (c.base) chain.policy = c.policy ?? NF_ACCEPT;
    out.chains.set(n, chain);
  }
  for (const [n, s] of t.sets) {
    out.sets.set(n, { name: n, flags: s.flags, keyType: s.keyType, keyLen: s.keyLen, dataType: s.dataType, dataLen: s.dataLen, ...(s.concat ? { concat: s.concat } : {}), ...(s.size ? { size: s.size } : {}) });
    const elems = new Map<string, ElementState>();
    for (const [k, e] of t.elements.get(n) ?? []) elems.set(k, copyElement(e));
    out.elements.set(n, elems);
  }
  return out;
}

function bump(m: Map<string, number>, k: string, by: number): void {
  const v = (m.get(k) ?? 0) + by;
  if (v) m.set(k, v);
  else m.delete(k);
}

function exprName(e: AttrMap): string {
  return attrString(e, EXPR_NAME) ?? '?';
}

/** "add rule ip t c", "flush set ip t s", ... as the addon describes records (native/nft_records.cc). */
export function describeRecord(r: DecodedRecord): string {
  const verb = r.action === RecordAction.New ? 'add' : 'delete';
  const fam = familyName(r.family);
  switch (r.kind) {
    case RecordKind.Table:
      return `${verb} table ${fam} ${attrString(r.attrs, TABLE.NAME) ?? ''}`;
    case RecordKind.Chain:
      return `${verb} chain ${fam} ${attrString(r.attrs, CHAIN.TABLE) ?? ''} ${attrString(r.attrs, CHAIN.NAME) ?? ''}`;
    case RecordKind.Rule: {
      const where = `${fam} ${attrString(r.attrs, RULE.TABLE) ?? ''} ${attrString(r.attrs, RULE.CHAIN) ?? ''}`;
      if (r.action === RecordAction.Del && r.children.length === 0 && !r.attrs.has(RULE.HANDLE)) return `flush chain ${where}`;
      return `${verb} rule ${where}`;
    }
    case RecordKind.Set:
      return `${verb} set ${fam} ${attrString(r.attrs, SET.TABLE) ?? ''} ${attrString(r.attrs, SET.NAME) ?? ''}`;
    case RecordKind.SetElem: {
      const where = `${fam} ${attrString(r.attrs, SET.TABLE) ?? ''} ${attrString(r.attrs, SET.NAME) ?? ''}`;
      if (r.action === RecordAction.Del && r.children.length === 0) return `flush set ${where}`;
      return `${verb} ${r.children.length} element(s) ${r.action === RecordAction.New ? 'to' : 'from'} set ${where}`;
    }
    default:
      return '?';
  }
}

function u64(b: Buffer | undefined): bigint | undefined {
  return b && b.length === 8 ? b.readBigUInt64LE(0) : undefined;
}

function required(m: AttrMap, type: number, what: string): string {
  const v = attrString(m, type);
  if (v === undefined) refuse('EINVAL', `${what} missing`);
  return v;
}


/** struct nft_regs: 20 32-bit words, the first four being the verdict register. */
const REG_WORDS = 20;
const META_LEN: Record<number, number> = { 1: 2, 6: 16, 7: 16, 15: 1, 16: 1 }; // protocol, iif/oifname, nfproto, l4proto
const CT_LEN: Record<number, number> = { 1: 1 }; // direction; state, status, mark, ... are 4

/** The registers one rule has stored to so far (nft_parse_register_load/_store with the 6.12+ tracking). */
class Registers {
  private readonly inited = new Array<boolean>(REG_WORDS).fill(false);
  private tracking = true;

  /** NFT_REG_1..4 are 16-byte registers (4 words each); NFT_REG32_00.. are single words after the verdict. */
  private static word(reg: number): number {
    return reg <= 4 ? reg * 4 : reg - 8 + 4;
  }

  private span(reg: number, len: number): [number, number] {
    const w = Registers.word(reg);
    if (len === 0) refuse('EINVAL', `register ${reg}: zero length`);
    if (w * 4 + len > REG_WORDS * 4) refuse('ERANGE', `register ${reg} + ${len} bytes is past the last register`);
    return [w, w + Math.ceil(len / 4)];
  }

  load(reg: number | undefined, len: number): void {
    if (reg === undefined || !this.tracking) return;
    if (Registers.word(reg) < 4) refuse('EINVAL', `cannot load from the verdict register`);
    const [from, to] = this.span(reg, len);
    for (let w = from; w < to; w++) if (!this.inited[w]) refuse('ENODATA', `register ${reg} (${len} bytes) is read before anything is stored in it`);
  }

  store(reg: number | undefined, len: number): void {
    if (reg === undefined || reg === NFT_REG_VERDICT) return;
    const [from, to] = this.span(reg, len);
    for (let w = from; w < to; w++) this.inited[w] = true;
  }

  /** An expression the fake does not model: stop checking this rule rather than refuse what the kernel may take. */
  stop(): void {
    this.tracking = false;
  }
}

/**
 * The bytes a SETELEM record's element list takes in the netlink message libnftnl builds
 * (NFTA_SET_ELEM_LIST_ELEMENTS: a nest of one nest per element holding flags, key, data or verdict, user data).
 */
export function encodedElementListBytes(children: AttrMap[]): number {
  let n = 4;
  for (const c of children) {
    n += 4;
    if (c.has(ELEM.FLAGS)) n += 8;
    const key = c.get(ELEM.KEY);
    if (key) n += 8 + pad4(key.length);
    const chain = c.get(ELEM.CHAIN);
    const data = c.get(ELEM.DATA);
    if (c.has(ELEM.VERDICT)) n += 16 + (chain ? 4 + pad4(chain.indexOf(0) < 0 ? chain.length + 1 : chain.indexOf(0) + 1) : 0);
    else if (data) n += 8 + pad4(data.length);
    const udata = c.get(ELEM.USERDATA);
    if (udata) n += 4 + pad4(udata.length);
  }
  return n;
}

/** A netlink attribute's length is a u16: a longer nest wraps around and the kernel reads only part of it. */
const NLA_MAX_BYTES = 0xffff;

/** One batch being applied: the working copy of the tables, copied table by table on first touch. */
class Batch {
  private readonly copied = new Set<string>();
  /** NFTA_SET_ID -> set name, for sets created in this batch. */
  private readonly setIds = new Map<number, string>();

  constructor(readonly tables: Map<string, FakeTable>, private readonly lacks: ReadonlySet<ConstructId> = new Set()) {}

  private table(family: number, name: string | undefined): FakeTable {
    if (name === undefined) refuse('EINVAL', 'table name missing');
    const k = tableKey(family, name);
    const t = this.tables.get(k);
    if (!t) refuse('ENOENT', `no table ${familyName(family)} ${name}`);
    if (!this.copied.has(k)) {
      const c = cloneTable(t);
      this.tables.set(k, c);
      this.copied.add(k);
      return c;
    }
    return t;
  }

  private chain(t: FakeTable, name: string | undefined): ChainState {
    if (name === undefined) refuse('EINVAL', 'chain name missing');
    const c = t.chains.get(name);
    if (!c) refuse('ENOENT', `no chain ${name}`);
    return c;
  }

  private set(t: FakeTable, attrs: AttrMap, nameType: number, idType: number): SetSpec {
    const name = attrString(attrs, nameType);
    let s = name !== undefined ? t.sets.get(name) : undefined;
    if (!s) {
      const id = attrU32(attrs, idType);
      const byId = id !== undefined ? this.setIds.get(id) : undefined;
      if (byId !== undefined) s = t.sets.get(byId);
    }
    if (!s) refuse('ENOENT', `no set ${name ?? '?'}`);
    return s;
  }

  apply(r: DecodedRecord): void {
    const newObj = r.action === RecordAction.New;
    if (r.kind === RecordKind.SetElem) {
      const bytes = encodedElementListBytes(r.children);
      // Not a kernel errno: the kernel never sees the whole list. It silently commits only the elements that fit
      // in the wrapped-around length (measured on 6.18), so this is a bug of the sender, and the fake says so.
      if (bytes > NLA_MAX_BYTES) {
        throw new Error(`FakeNftClient: ${describeRecord(r)}: its element list encodes to ${bytes} bytes, more than a netlink attribute holds (${NLA_MAX_BYTES}); the kernel would silently drop elements`);
      }
    }
    switch (r.kind) {
      case RecordKind.Table:
        return newObj ? this.newTable(r) : this.delTable(r);
      case RecordKind.Chain:
        return newObj ? this.newChain(r) : this.delChain(r);
      case RecordKind.Rule:
        return newObj ? this.newRule(r) : this.delRule(r);
      case RecordKind.Set:
        return newObj ? this.newSet(r) : this.delSet(r);
      case RecordKind.SetElem:
        return newObj ? this.newElements(r) : this.delElements(r);
      default:
        refuse('EINVAL', `unknown record kind ${String(r.kind)}`);
    }
  }

  private newTable(r: DecodedRecord): void {
    const name = required(r.attrs, TABLE.NAME, 'table name');
    const k = tableKey(r.family, name);
    const flags = attrU32(r.attrs, TABLE.FLAGS);
    if (flags !== undefined && flags & ~TABLE_F_MASK) refuse('EOPNOTSUPP', `unknown table flags 0x${flags.toString(16)}`);
    const cur = this.tables.get(k);
    if (cur) {
      if (r.nlflags & NLM_F_EXCL) refuse('EEXIST', `table ${name} exists`);
      if (r.nlflags & NLM_F_REPLACE) refuse('EOPNOTSUPP', 'tables cannot be replaced');
      // An update: the flags change only when the message carries them (nf_tables_updtable).
      if (flags !== undefined && flags !== (cur.flags ?? 0)) this.table(r.family, name).flags = flags;
      return;
    }
    this.tables.set(k, {
      family: r.family as NfFamily, name, flags: flags ?? 0, chains: new Map(), sets: new Map(), elements: new Map(),
      nextHandle: 1n, meta: new Map(), chainUse: new Map(), setUse: new Map(),
    });
    this.copied.add(k);
  }

  private delTable(r: DecodedRecord): void {
    const name = required(r.attrs, TABLE.NAME, 'table name');
    const k = tableKey(r.family, name);
    if (!this.tables.delete(k)) refuse('ENOENT', `no table ${familyName(r.family)} ${name}`);
    this.copied.delete(k);
  }

  private newChain(r: DecodedRecord): void {
    const t = this.table(r.family, attrString(r.attrs, CHAIN.TABLE));
    const name = required(r.attrs, CHAIN.NAME, 'chain name');
    const hook = attrU32(r.attrs, CHAIN.HOOKNUM);
    const prio = attrI32(r.attrs, CHAIN.PRIO);
    let base: BaseChainSpec | undefined;
    if (hook !== undefined || prio !== undefined) {
      if (hook === undefined || prio === undefined) refuse('EINVAL', 'a base chain needs a hook and a priority');
      const type = attrString(r.attrs, CHAIN.TYPE) ?? 'filter';
      if (type !== 'filter' && type !== 'nat') refuse('ENOENT', `no chain type ${type}`);
      base = { type, hook, priority: prio };
    }
    const policy = attrU32(r.attrs, CHAIN.POLICY);
    if (policy !== undefined && policy !== NF_ACCEPT && policy !== NF_DROP) refuse('EINVAL', `policy ${policy} is neither accept nor drop`);
    const cur = t.chains.get(name);
    if (cur) {
      if (r.nlflags & NLM_F_EXCL) refuse('EEXIST', `chain ${name} exists`);
      if (r.nlflags & NLM_F_REPLACE) refuse('EOPNOTSUPP', 'chains cannot be replaced');
      if (base) {
        if (!cur.base) refuse('EOPNOTSUPP', `chain ${name} is not a base chain`);
        if (cur.base.type !== base.type) refuse('EEXIST', `chain ${name} has type ${cur.base.type}`);
        if (cur.base.hook !== base.hook || cur.base.priority !== base.priority) refuse('EOPNOTSUPP', `chain ${name} has another hook or priority`);
      }
      // An update: a policy only on a base chain (nf_tables_updchain).
      if (policy !== undefined) {
        if (!cur.base) refuse('EOPNOTSUPP', `chain ${name} is not a base chain: it has no policy`);
        cur.policy = policy;
      }
      return;
    }
    if (policy !== undefined && !base) refuse('EOPNOTSUPP', `chain ${name} is not a base chain: it has no policy`);
    const chain: ChainState = { name, rules: [] };
    if (base) chain.base = base;
    if (base) chain.policy = policy ?? NF_ACCEPT;
    t.chains.set(name, chain);
    t.meta.set(name, []);
    t.nextHandle++;
  }

  private delChain(r: DecodedRecord): void {
    const t = this.table(r.family, attrString(r.attrs, CHAIN.TABLE));
    const name = attrString(r.attrs, CHAIN.NAME);
    const chain = this.chain(t, name);
    if ((t.chainUse.get(chain.name) ?? 0) > 0) refuse('EBUSY', `chain ${chain.name} is in use`);
    this.flush(t, chain);
    t.chains.delete(chain.name);
    t.meta.delete(chain.name);
  }

  private flush(t: FakeTable, chain: ChainState): void {
    for (const m of t.meta.get(chain.name) ?? []) this.release(t, m);
    chain.rules = [];
    t.meta.set(chain.name, []);
  }

  private release(t: FakeTable, m: RuleMeta): void {
    for (const j of m.jumps) bump(t.chainUse, j, -1);
    for (const s of m.lookups) bump(t.setUse, s, -1);
  }

  /**
   * Checks a rule's expressions the way their init functions do, and returns what it references. A refusal names
   * the expression, as the kernel's extended ack does.
   */
  private ruleRefs(t: FakeTable, chain: ChainState, exprs: AttrMap[]): { jumps: string[]; lookups: string[] } {
    const refs = { jumps: [] as string[], lookups: [] as string[] };
    const regs = new Registers();
    exprs.forEach((e, index) => {
      try {
        this.checkExpr(t, chain, e, regs, refs);
      } catch (err) {
        if (err instanceof Refusal) err.expression = { index, name: exprName(e) };
        throw err;
      }
    });
    return refs;
  }

  private checkExpr(t: FakeTable, chain: ChainState, e: AttrMap, regs: Registers, { jumps, lookups }: { jumps: string[]; lookups: string[] }): void {
    {
      const u = (type: number) => attrU32(e, type);
      switch (exprName(e)) {
        case 'immediate': {
          const verdict = attrI32(e, IMM.VERDICT);
          if (verdict === NFT_JUMP || verdict === NFT_GOTO) {
            const target = this.chain(t, attrString(e, IMM.CHAIN));
            if (target.base) refuse('EOPNOTSUPP', `cannot jump to base chain ${target.name}`);
            jumps.push(target.name);
          }
          const data = e.get(IMM.DATA);
          if (data) regs.store(u(IMM.DREG), data.length);
          break;
        }
        case 'lookup': {
          const set = this.set(t, e, LOOKUP.SET, LOOKUP.SET_ID);
          regs.load(u(LOOKUP.SREG), set.keyLen);
          const dreg = u(LOOKUP.DREG);
          // Kernels before 6.5 want a destination register on every map lookup (construct map-membership).
          if (dreg === undefined && set.flags & NFT_SET_MAP && this.lacks.has('map-membership')) refuse('EINVAL', `lookup without a destination register on map ${set.name}`);
          if (set.flags & NFT_SET_EVAL && this.lacks.has('dynamic-set-lookup')) refuse('EOPNOTSUPP', `lookup in dynamic set ${set.name}`);
          if (dreg !== undefined) {
            if (!(set.flags & NFT_SET_MAP)) refuse('EINVAL', `lookup with a destination register on set ${set.name}, not a map`);
            if ((dreg === NFT_REG_VERDICT) !== (set.dataType === NFT_DATA_VERDICT)) refuse('EINVAL', `lookup register does not fit map ${set.name}`);
            if (dreg !== NFT_REG_VERDICT) regs.store(dreg, set.dataLen ?? 0);
          }
          lookups.push(set.name);
          break;
        }
        case 'payload':
          regs.store(u(PAYLOAD.DREG), u(PAYLOAD.LEN) ?? 0);
          break;
        case 'meta': {
          const len = META_LEN[u(META.KEY) ?? -1] ?? 4;
          regs.store(u(META.DREG), len);
          regs.load(u(META.SREG), len);
          break;
        }
        case 'ct': {
          const len = CT_LEN[u(CT.KEY) ?? -1] ?? 4;
          regs.store(u(CT.DREG), len);
          regs.load(u(CT.SREG), len);
          break;
        }
        case 'cmp':
          regs.load(u(CMP.SREG), e.get(CMP.DATA)?.length ?? 0);
          break;
        case 'bitwise':
          regs.load(u(BITWISE.SREG), u(BITWISE.LEN) ?? 0);
          regs.store(u(BITWISE.DREG), u(BITWISE.LEN) ?? 0);
          break;
        case 'numgen':
          regs.store(u(NUMGEN.DREG), 4);
          break;
        case 'dynset': {
          // nft_dynset_init: the set must take updates from rules (NFT_SET_EVAL) and, for a timeout, have one.
          const set = this.set(t, e, DYNSET.SET_NAME, DYNSET.SET_ID);
          if (!(set.flags & NFT_SET_EVAL)) refuse('EOPNOTSUPP', `dynset on set ${set.name}, which rules cannot update`);
          if (e.get(DYNSET.TIMEOUT) && !(set.flags & NFT_SET_TIMEOUT)) refuse('EINVAL', `dynset timeout on set ${set.name}, which has none`);
          regs.load(u(DYNSET.SREG_KEY), set.keyLen);
          lookups.push(set.name);
          break;
        }
        case 'fib':
          regs.store(u(FIB.DREG), u(FIB.RESULT) === 2 ? 16 : 4); // NFT_FIB_RESULT_OIFNAME is a name
          break;
        case 'nat': {
          const addrLen = u(NAT.FAMILY) === NFPROTO_IPV6 ? 16 : 4;
          regs.load(u(NAT.REG_ADDR_MIN), addrLen);
          regs.load(u(NAT.REG_ADDR_MAX), addrLen);
          regs.load(u(NAT.REG_PROTO_MIN), 2);
          regs.load(u(NAT.REG_PROTO_MAX), 2);
          break;
        }
        case 'masq':
          regs.load(u(MASQ.REG_PROTO_MIN), 2);
          regs.load(u(MASQ.REG_PROTO_MAX), 2);
          break;
        case 'reject':
          if (chain.base?.hook === NF_INET_PRE_ROUTING && this.lacks.has('reject-prerouting')) refuse('EOPNOTSUPP', 'reject in a prerouting chain');
          break;
        case 'counter':
          break;
        default:
          regs.stop();
      }
    }
  }

  private newRule(r: DecodedRecord): void {
    const t = this.table(r.family, attrString(r.attrs, RULE.TABLE));
    const chain = this.chain(t, attrString(r.attrs, RULE.CHAIN));
    const metas = t.meta.get(chain.name) ?? [];
    const handle = u64(r.attrs.get(RULE.HANDLE));
    let replaceAt = -1;
    let at: number;
    if (handle !== undefined) {
      const i = metas.findIndex((m) => m.handle === handle);
      if (i < 0) refuse('ENOENT', `no rule with handle ${handle}`);
      if (r.nlflags & NLM_F_EXCL) refuse('EEXIST', `rule ${handle} exists`);
      if (!(r.nlflags & NLM_F_REPLACE)) refuse('EOPNOTSUPP', 'a rule handle needs NLM_F_REPLACE');
      replaceAt = i;
      at = i;
    } else {
      if (!(r.nlflags & NLM_F_CREATE) || r.nlflags & NLM_F_REPLACE) refuse('EINVAL', 'a new rule needs NLM_F_CREATE');
      const pos = u64(r.attrs.get(RULE.POSITION));
      const append = (r.nlflags & NLM_F_APPEND) !== 0;
      if (pos !== undefined) {
        const i = metas.findIndex((m) => m.handle === pos);
        if (i < 0) refuse('ENOENT', `no rule with handle ${pos}`);
        at = append ? i + 1 : i;
      } else {
        at = append ? metas.length : 0;
      }
    }
    const refs = this.ruleRefs(t, chain, r.children);
    const body = canonicalRuleBody(r.children);
    if (replaceAt >= 0) {
      this.release(t, metas[replaceAt]);
      metas.splice(replaceAt, 1);
      chain.rules.splice(replaceAt, 1);
    }
    const meta: RuleMeta = { handle: replaceAt >= 0 ? handle! : t.nextHandle++, ...refs };
    for (const j of refs.jumps) bump(t.chainUse, j, 1);
    for (const s of refs.lookups) bump(t.setUse, s, 1);
    metas.splice(at, 0, meta);
    chain.rules.splice(at, 0, body);
    t.meta.set(chain.name, metas);
  }

  private delRule(r: DecodedRecord): void {
    const t = this.table(r.family, attrString(r.attrs, RULE.TABLE));
    const chainName = attrString(r.attrs, RULE.CHAIN);
    const handle = u64(r.attrs.get(RULE.HANDLE));
    if (chainName === undefined) {
      if (handle !== undefined) refuse('EINVAL', 'a rule handle needs a chain');
      for (const c of t.chains.values()) this.flush(t, c);
      return;
    }
    const chain = this.chain(t, chainName);
    if (handle === undefined) {
      this.flush(t, chain);
      return;
    }
    const metas = t.meta.get(chain.name) ?? [];
    const i = metas.findIndex((m) => m.handle === handle);
    if (i < 0) refuse('ENOENT', `no rule with handle ${handle}`);
    this.release(t, metas[i]);
    metas.splice(i, 1);
    chain.rules.splice(i, 1);
  }

  private newSet(r: DecodedRecord): void {
    const a = r.attrs;
    const name = required(a, SET.NAME, 'set name');
    const keyLen = attrU32(a, SET.KEY_LEN);
    const id = attrU32(a, SET.ID);
    if (attrString(a, SET.TABLE) === undefined || keyLen === undefined || id === undefined) refuse('EINVAL', 'set table, key length and id are required');
    if (keyLen === 0 || keyLen > DATA_VALUE_MAXLEN) refuse('EINVAL', `key length ${keyLen}`);
    const flags = attrU32(a, SET.FLAGS) ?? 0;
    const dataType = attrU32(a, SET.DATA_TYPE);
    let dataLen: number | undefined;
    if (dataType !== undefined) {
      if (!(flags & NFT_SET_MAP)) refuse('EINVAL', 'a data type needs a map');
      if (dataType === NFT_DATA_VERDICT) {
        dataLen = NFT_VERDICT_DATA_LEN;
      } else {
        dataLen = attrU32(a, SET.DATA_LEN);
        if (dataLen === undefined || dataLen === 0 || dataLen > DATA_VALUE_MAXLEN) refuse('EINVAL', 'a data map needs a data length');
      }
    } else if (flags & NFT_SET_MAP) {
      refuse('EINVAL', 'a map needs a data type');
    }
    const spec: SetSpec = { name, flags, keyType: attrU32(a, SET.KEY_TYPE) ?? 0, keyLen, dataType, dataLen };
    const concat = a.get(SET.DESC_CONCAT);
    if (flags & NFT_SET_CONCAT && flags & NFT_SET_INTERVAL && this.lacks.has('concat-ranges')) refuse('EOPNOTSUPP', `set ${name}: no set type for concatenated ranges`);
    if (flags & NFT_SET_CONCAT) {
      // The kernel needs the field lengths of a concatenation of ranges, and they must add up (each padded to 4).
      if (!(flags & NFT_SET_INTERVAL) || !concat || concat.length < 2) refuse('EINVAL', `set ${name}: NFT_SET_CONCAT needs NFT_SET_INTERVAL and two fields or more`);
      const total = [...concat].reduce((n, f) => n + ((f + 3) & ~3), 0);
      if (total !== keyLen) refuse('EINVAL', `set ${name}: fields add up to ${total} bytes, key length ${keyLen}`);
      spec.concat = [...concat];
    }
    // The kernel keeps a given size (NFTA_SET_DESC_SIZE) and dumps it back; none means none.
    const size = attrU32(a, SET.DESC_SIZE);
    if (size) spec.size = size;
    const t = this.table(r.family, attrString(a, SET.TABLE));
    const cur = t.sets.get(name);
    if (cur) {
      if (r.nlflags & NLM_F_EXCL) refuse('EEXIST', `set ${name} exists`);
      if (r.nlflags & NLM_F_REPLACE) refuse('EOPNOTSUPP', 'sets cannot be replaced');
      if (cur.flags !== spec.flags || cur.keyType !== spec.keyType || cur.keyLen !== spec.keyLen ||
          cur.dataType !== spec.dataType || cur.dataLen !== spec.dataLen) refuse('EEXIST', `set ${name} exists with another type`);
      this.setIds.set(id, name);
      return;
    }
    if (!(r.nlflags & NLM_F_CREATE)) refuse('ENOENT', `no set ${name}`);
    t.sets.set(name, spec);
    t.elements.set(name, new Map());
    t.nextHandle++;
    this.setIds.set(id, name);
  }

  private delSet(r: DecodedRecord): void {
    const t = this.table(r.family, attrString(r.attrs, SET.TABLE));
    const set = this.set(t, r.attrs, SET.NAME, SET.ID);
    if ((t.setUse.get(set.name) ?? 0) > 0) refuse('EBUSY', `set ${set.name} is in use`);
    this.flushSet(t, set);
    t.sets.delete(set.name);
    t.elements.delete(set.name);
  }

  private flushSet(t: FakeTable, set: SetSpec): void {
    for (const e of t.elements.get(set.name)?.values() ?? []) if (e.chain !== undefined) bump(t.chainUse, e.chain, -1);
    t.elements.set(set.name, new Map());
  }

  private elementKeyOf(set: SetSpec, c: AttrMap): Buffer {
    const key = c.get(ELEM.KEY);
    if (!key) refuse('EINVAL', 'element without a key');
    if (key.length !== set.keyLen) refuse('EINVAL', `key of ${key.length} bytes for set ${set.name} (key length ${set.keyLen})`);
    return key;
  }

  private newElements(r: DecodedRecord): void {
    const t = this.table(r.family, attrString(r.attrs, SET.TABLE));
    const set = this.set(t, r.attrs, SET.NAME, SET.ID);
    const elems = t.elements.get(set.name)!;
    const isMap = (set.flags & NFT_SET_MAP) !== 0;
    for (const c of r.children) {
      const e: ElementState = { key: Buffer.from(this.elementKeyOf(set, c)) };
      const keyEnd = c.get(ELEM.KEY_END);
      if (keyEnd) {
        // A range needs a range set (NFT_SET_INTERVAL) and an end as long as the key.
        if (!(set.flags & NFT_SET_INTERVAL)) refuse('EINVAL', `range element for set ${set.name}, which has no interval flag`);
        if (keyEnd.length !== set.keyLen) refuse('EINVAL', `range end of ${keyEnd.length} bytes for set ${set.name} (key length ${set.keyLen})`);
        e.keyEnd = Buffer.from(keyEnd);
      } else if (set.flags & NFT_SET_CONCAT) refuse('EINVAL', `element without a range end for concatenated range set ${set.name}`);
      const flags = attrU32(c, ELEM.FLAGS);
      if (flags) e.flags = flags;
      const udata = c.get(ELEM.USERDATA);
      const comment = udata ? decodeElementComment(udata) : undefined;
      if (comment !== undefined) e.comment = comment;
      const verdict = attrI32(c, ELEM.VERDICT);
      const data = c.get(ELEM.DATA);
      if (!isMap) {
        if (verdict !== undefined || data !== undefined) refuse('EINVAL', `element with data for set ${set.name}, not a map`);
      } else if (set.dataType === NFT_DATA_VERDICT) {
        if (verdict === undefined) refuse('EINVAL', `element without a verdict for verdict map ${set.name}`);
        e.verdict = verdict;
        if (verdict === NFT_JUMP || verdict === NFT_GOTO) {
          const target = this.chain(t, attrString(c, ELEM.CHAIN));
          if (target.base) refuse('EOPNOTSUPP', `cannot jump to base chain ${target.name}`);
          e.chain = target.name;
        }
      } else {
        if (data === undefined || verdict !== undefined || data.length !== set.dataLen) refuse('EINVAL', `element data does not fit map ${set.name}`);
        e.data = Buffer.from(data);
      }
      const k = elementKey(e);
      const cur = elems.get(k);
      if (cur) {
        if (!sameElement(cur, e)) refuse('EEXIST', `element exists in set ${set.name} with other data`);
        if (r.nlflags & NLM_F_EXCL) refuse('EEXIST', `element exists in set ${set.name}`);
        continue;
      }
      elems.set(k, e);
      if (e.chain !== undefined) bump(t.chainUse, e.chain, 1);
    }
  }

  private delElements(r: DecodedRecord): void {
    const t = this.table(r.family, attrString(r.attrs, SET.TABLE));
    const set = this.set(t, r.attrs, SET.NAME, SET.ID);
    if (r.children.length === 0) {
      this.flushSet(t, set);
      return;
    }
    const elems = t.elements.get(set.name)!;
    for (const c of r.children) {
      const key = this.elementKeyOf(set, c);
      const end = c.get(ELEM.KEY_END);
      const k = elementKey({ key, keyEnd: end });
      const cur = elems.get(k);
      if (!cur) refuse('ENOENT', `no such element in set ${set.name}`);
      elems.delete(k);
      if (cur.chain !== undefined) bump(t.chainUse, cur.chain, -1);
    }
  }
}

export interface FakeKernel {
  /** Constructs this fake kernel refuses as the kernels without them do (kernel.ts): e.g. ['map-membership'] for 6.1. */
  lacks?: ConstructId[];
}

export class FakeNftClient implements NftClient {
  private tables = new Map<string, FakeTable>();
  /** Batches accepted so far (empty transactions included). */
  commits = 0;
  private closed = false;
  private readonly lacks: ReadonlySet<ConstructId>;

  constructor(kernel: FakeKernel = {}) {
    this.lacks = new Set(kernel.lacks ?? []);
  }

  /** Every record checked on a copy, every refusal reported, nothing kept: a batch without its END. */
  async check(tx: NftTransaction): Promise<CheckResult> {
    if (this.closed) throw new Error('FakeNftClient: closed');
    const records = decodeRecords(tx.records());
    const batch = new Batch(new Map(this.tables), this.lacks);
    const errors: BatchErrorInfo[] = [];
    records.forEach((r, i) => {
      try {
        batch.apply(r);
      } catch (e) {
        if (!(e instanceof Refusal)) throw e;
        errors.push({ index: i, errno: osConstants.errno[e.code], code: e.code, object: describeRecord(r), kernelMessage: '', ...(e.expression ? { expression: e.expression } : {}) });
      }
    });
    return { errors, lostReports: false };
  }

  async run(tx: NftTransaction): Promise<CommitResult> {
    if (this.closed) throw new Error('FakeNftClient: closed');
    if (tx.size === 0) {
      this.commits++;
      return { operations: 0, messages: 0, bytes: 0, kernelMicros: 0, totalMicros: 0 };
    }
    const stream = tx.records();
    const records = decodeRecords(stream);
    const batch = new Batch(new Map(this.tables), this.lacks);
    for (let i = 0; i < records.length; i++) {
      try {
        batch.apply(records[i]);
      } catch (e) {
        if (!(e instanceof Refusal)) throw e;
        const object = describeRecord(records[i]);
        const op = tx.operation(i);
        const owner = op?.owner;
        const where = e.expression ? `, expression #${e.expression.index} (${e.expression.name})` : '';
        const hint = await refusalHint(this, e.expression?.name ?? (op?.verb === 'add set' ? 'set' : undefined));
        const text = `nftables transaction rejected, nothing applied: ${object} (operation #${i})${where}: ${STRERROR[e.code]} (${e.code}) - fake says: ${e.message}${hint}`;
        throw new NftTransactionError(owner ? `${owner}: ${text}` : text, e.code, osConstants.errno[e.code], i, object, owner);
      }
    }
    this.tables = batch.tables;
    this.commits++;
    return { operations: records.length, messages: records.length + 2, bytes: stream.length, kernelMicros: 0, totalMicros: 0 };
  }

  async dumpTable(family: NfFamily, table: string): Promise<TableState | undefined> {
    const t = this.tables.get(tableKey(family, table));
    return t ? exportTable(t) : undefined;
  }

  /** Rule handles per chain, in order (as DecodedTable.handles from a kernel dump). */
  ruleHandles(family: NfFamily, table: string): Map<string, bigint[]> | undefined {
    const t = this.tables.get(tableKey(family, table));
    if (!t) return undefined;
    return new Map([...t.meta].map(([c, m]) => [c, m.map((x) => x.handle)]));
  }

  /** Every table, sorted, as formatTable() text: for golden tests and for reading a failure. */
  dump(): string {
    return [...this.tables.values()]
      .sort((a, b) => familyName(a.family).localeCompare(familyName(b.family)) || a.name.localeCompare(b.name))
      .map((t) => formatTable(t))
      .join('');
  }

  close(): void {
    this.closed = true;
  }
}

// ---- text form ------------------------------------------------------------------------------------------------

type AttrKind = 'u32' | 'i32' | 'str' | 'hex' | 'verdict' | 'u8' | Record<number, string>;

const HOOKS: Record<number, string> = { 0: 'prerouting', 1: 'input', 2: 'forward', 3: 'output', 4: 'postrouting' };
const VERDICTS: Record<number, string> = { 0: 'drop', 1: 'accept', [-1]: 'continue', [-2]: 'break', [-3]: 'jump', [-4]: 'goto', [-5]: 'return' };
const CMP_OPS: Record<number, string> = { 0: 'eq', 1: 'neq', 2: 'lt', 3: 'lte', 4: 'gt', 5: 'gte' };
const META_KEYS: Record<number, string> = { 3: 'mark', 15: 'nfproto', 16: 'l4proto' };
const NAT_TYPES: Record<number, string> = { 0: 'snat', 1: 'dnat' };
const PAYLOAD_BASES: Record<number, string> = { 0: 'll', 1: 'nh', 2: 'th' };

/** Attribute names and how to print them, per expression (libnftnl's numbering, as in constants.ts). */
const EXPR_ATTRS: Record<string, Record<number, [string, AttrKind]>> = {
  payload: { [PAYLOAD.DREG]: ['dreg', 'u32'], [PAYLOAD.BASE]: ['base', PAYLOAD_BASES], [PAYLOAD.OFFSET]: ['offset', 'u32'], [PAYLOAD.LEN]: ['len', 'u32'] },
  numgen: { [NUMGEN.DREG]: ['dreg', 'u32'], [NUMGEN.MODULUS]: ['mod', 'u32'], [NUMGEN.TYPE]: ['type', { 0: 'inc', 1: 'random' }], [NUMGEN.OFFSET]: ['offset', 'u32'] },
  meta: { [META.KEY]: ['key', META_KEYS], [META.DREG]: ['dreg', 'u32'], [META.SREG]: ['sreg', 'u32'] },
  cmp: { [CMP.SREG]: ['sreg', 'u32'], [CMP.OP]: ['op', CMP_OPS], [CMP.DATA]: ['data', 'hex'] },
  immediate: { [IMM.DREG]: ['dreg', 'u32'], [IMM.DATA]: ['data', 'hex'], [IMM.VERDICT]: ['verdict', 'verdict'], [IMM.CHAIN]: ['chain', 'str'] },
  bitwise: {
    [BITWISE.SREG]: ['sreg', 'u32'], [BITWISE.DREG]: ['dreg', 'u32'], [BITWISE.LEN]: ['len', 'u32'], [BITWISE.MASK]: ['mask', 'hex'],
    [BITWISE.XOR]: ['xor', 'hex'], [BITWISE.OP]: ['op', 'u32'],
  },
  nat: {
    [NAT.TYPE]: ['type', NAT_TYPES], [NAT.FAMILY]: ['family', 'u32'], [NAT.REG_ADDR_MIN]: ['addr_min', 'u32'], [NAT.REG_ADDR_MAX]: ['addr_max', 'u32'],
    [NAT.REG_PROTO_MIN]: ['proto_min', 'u32'], [NAT.REG_PROTO_MAX]: ['proto_max', 'u32'], [NAT.FLAGS]: ['flags', 'u32'],
  },
  dynset: { [DYNSET.SREG_KEY]: ['sreg', 'u32'], [DYNSET.OP]: ['op', 'u32'], [DYNSET.TIMEOUT]: ['timeout', 'hex'], [DYNSET.SET_NAME]: ['set', 'str'] },
  lookup: { [LOOKUP.SREG]: ['sreg', 'u32'], [LOOKUP.DREG]: ['dreg', 'u32'], [LOOKUP.SET]: ['set', 'str'], [LOOKUP.SET_ID]: ['set_id', 'u32'], [LOOKUP.FLAGS]: ['flags', 'u32'] },
  ct: { [CT.DREG]: ['dreg', 'u32'], [CT.KEY]: ['key', { 0: 'state', 2: 'status' }], [CT.DIR]: ['dir', 'u8'], [CT.SREG]: ['sreg', 'u32'] },
  reject: { [REJECT.TYPE]: ['type', { 0: 'icmp', 1: 'tcp-rst', 2: 'icmpx' }], [REJECT.CODE]: ['code', 'u8'] },
  masq: { [MASQ.FLAGS]: ['flags', 'u32'], [MASQ.REG_PROTO_MIN]: ['proto_min', 'u32'], [MASQ.REG_PROTO_MAX]: ['proto_max', 'u32'] },
  fib: { [FIB.DREG]: ['dreg', 'u32'], [FIB.RESULT]: ['result', 'u32'], [FIB.FLAGS]: ['flags', 'u32'] },
};

function formatValue(v: Buffer, kind: AttrKind): string {
  if (kind === 'str') {
    const end = v.indexOf(0);
    return JSON.stringify(v.toString('utf8', 0, end < 0 ? v.length : end));
  }
  if (kind === 'u8' && v.length === 1) return String(v[0]);
  if (v.length !== 4 || kind === 'hex' || kind === 'u8') return `0x${v.toString('hex')}`;
  if (kind === 'u32') return String(v.readUInt32LE(0));
  const n = kind === 'verdict' || kind === 'i32' ? v.readInt32LE(0) : v.readUInt32LE(0);
  const names = kind === 'verdict' ? VERDICTS : typeof kind === 'object' ? kind : undefined;
  return names?.[n] ?? String(n);
}

/** One expression as `name(attr=value ...)`. */
export function formatExpr(e: AttrMap): string {
  const name = exprName(e);
  const known = EXPR_ATTRS[name] ?? {};
  const parts: string[] = [];
  for (const t of [...e.keys()].sort((a, b) => a - b)) {
    if (t === EXPR_NAME) continue;
    const [label, kind] = known[t] ?? [`#${t}`, 'hex' as const];
    parts.push(`${label}=${formatValue(e.get(t)!, kind)}`);
  }
  return `${name}(${parts.join(' ')})`;
}

export function formatRule(body: Buffer): string {
  return parseRuleBody(body).map(formatExpr).join(' ');
}

function formatElement(e: ElementState): string {
  let s = e.key.toString('hex');
  if (e.flags) s += ` flags=0x${e.flags.toString(16)}`;
  if (e.verdict !== undefined) s += ` : ${VERDICTS[e.verdict] ?? e.verdict}${e.chain !== undefined ? ` ${e.chain}` : ''}`;
  if (e.data !== undefined) s += ` : 0x${e.data.toString('hex')}`;
  if (e.comment !== undefined) s += ` comment ${JSON.stringify(e.comment)}`;
  return s;
}

/**
 * A table as sorted, stable text: sets (with their elements, sorted by key, as hex) then chains (with their rules
 * in order, as expression names and attributes). Two TableStates with the same text hold the same objects.
 */
export function formatTable(t: TableState): string {
  const lines = [`table ${familyName(t.family)} ${t.name}${t.flags ? ` { flags 0x${t.flags.toString(16)} }` : ''}`];
  for (const name of [...t.sets.keys()].sort()) {
    const s = t.sets.get(name)!;
    let head = `  ${s.flags & NFT_SET_MAP ? 'map' : 'set'} ${name} { flags 0x${s.flags.toString(16)} keytype 0x${s.keyType.toString(16)} keylen ${s.keyLen}`;
    if (s.dataType !== undefined) head += ` datatype ${s.dataType === NFT_DATA_VERDICT ? 'verdict' : `0x${s.dataType.toString(16)}`}`;
    if (s.dataLen !== undefined) head += ` datalen ${s.dataLen}`;
    lines.push(`${head} }`);
    const elems = [...(t.elements.get(name)?.values() ?? [])].map(formatElement).sort();
    for (const e of elems) lines.push(`    ${e}`);
  }
  for (const name of [...t.chains.keys()].sort()) {
    const c = t.chains.get(name)!;
    // The policy only when it is not the default (accept), so tables built without one print the same.
    const policy = c.base && c.policy !== undefined && c.policy !== NF_ACCEPT ? ` policy ${VERDICTS[c.policy] ?? c.policy}` : '';
    const base = c.base ? ` { type ${c.base.type} hook ${HOOKS[c.base.hook] ?? c.base.hook} priority ${c.base.priority}${policy} }` : '';
    lines.push(`  chain ${name}${base}`);
    for (const r of c.rules) lines.push(`    ${formatRule(r)}`);
  }
  return lines.join('\n') + '\n';
}
