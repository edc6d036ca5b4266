// NftTransaction: queued operations that become one netlink batch (after knftables' Transaction). Operations
// are written straight into the record stream as they are queued; each can carry an owner ("Service ns/name:port")
// so a kernel error is reported against the Kubernetes object that caused it.
import { RecordAction, RecordAttrWriter, RecordKind, RecordStreamWriter } from '../../native/recordStream';
import { NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL } from '../../netlink/message';
import { CHAIN, ELEM, NF_ACCEPT, RULE, SET, TABLE, NfFamily } from './netlink/constants';
import { encodeElementComment } from './netlink/udata';
import type { ChainState, ElementState, SetSpec } from './objects';

// A set-element message's element list is one netlink attribute, whose length is a u16: keep each well below.
const ELEMENT_CHUNK_BYTES = 32 * 1024;


export interface OperationInfo {
  /** "add rule", "delete chain", "flush set", ... */
  verb: string;
  /** The chain, set or table it acts on. */
  target: string;
  owner?: string;
}

export class NftTransaction {
  private readonly stream = new RecordStreamWriter();
  private readonly ops: OperationInfo[] = [];
  private readonly counts: Record<string, number> = {};
  private setId = 1;
  /** Owner attached to the operations queued from now on. */
  owner: string | undefined;

  get size(): number {
    return this.ops.length;
  }

  operation(index: number): OperationInfo | undefined {
    return this.ops[index];
  }

  /** Counts of queued operations by verb ("add rule" ...), for logs and metrics. */
  summary(): Record<string, number> {
    return { ...this.counts };
  }

  records(): Buffer {
    return this.stream.finish();
  }

  private begin(action: RecordAction, kind: RecordKind, family: NfFamily, flags: number, verb: string, target: string): RecordAttrWriter {
    this.stream.begin(action, kind, family, flags);
    this.ops.push({ verb, target, owner: this.owner });
    this.counts[verb] = (this.counts[verb] ?? 0) + 1;
    return new RecordAttrWriter(this.stream.w);
  }

  /** flags: NFT_TABLE_F_* (the probe's table is dormant: its base chains never hook packets). */
  addTable(family: NfFamily, table: string, flags = 0): void {
    const a = this.begin(RecordAction.New, RecordKind.Table, family, NLM_F_CREATE, 'add table', table).str(TABLE.NAME, table);
    if (flags) a.u32(TABLE.FLAGS, flags);
    a.end();
  }

  /** Sets an existing table's flags (NFTA_TABLE_FLAGS always sent: without it the kernel leaves them as they are). */
  updateTable(family: NfFamily, table: string, flags: number): void {
    this.begin(RecordAction.New, RecordKind.Table, family, 0, 'update table', table).str(TABLE.NAME, table).u32(TABLE.FLAGS, flags).end();
  }

  deleteTable(family: NfFamily, table: string): void {
    this.begin(RecordAction.Del, RecordKind.Table, family, 0, 'delete table', table).str(TABLE.NAME, table).end();
  }

  /** A base chain's policy is always sent: accept unless the chain says otherwise (svcplane's never do). */
  addChain(family: NfFamily, table: string, chain: Pick<ChainState, 'name' | 'base' | 'policy'>, verb = 'add chain'): void {
    const a = this.begin(RecordAction.New, RecordKind.Chain, family, NLM_F_CREATE, verb, chain.name)
      .str(CHAIN.NAME, chain.name)
      .str(CHAIN.TABLE, table);
    if (chain.base) a.u32(CHAIN.HOOKNUM, chain.base.hook).u32(CHAIN.PRIO, chain.base.priority >>> 0);
    if (chain.base || chain.policy !== undefined) a.u32(CHAIN.POLICY, chain.policy ?? NF_ACCEPT);
    if (chain.base) a.str(CHAIN.TYPE, chain.base.type);
    a.end();
  }

  /**
   * Sets an existing base chain's policy back to accept: the same message as adding it, which the kernel takes as an
   * update when a chain of that name exists with the same type, hook and priority (nf_tables_updchain).
   */
  updateBaseChain(family: NfFamily, table: string, chain: Pick<ChainState, 'name' | 'base' | 'policy'>): void {
    this.addChain(family, table, chain, 'update chain');
  }

  deleteChain(family: NfFamily, table: string, name: string): void {
    this.begin(RecordAction.Del, RecordKind.Chain, family, 0, 'delete chain', name)
      .str(CHAIN.NAME, name).str(CHAIN.TABLE, table).end();
  }

  /** Deletes every rule of a chain (DELRULE naming the chain and no handle). */
  flushChain(family: NfFamily, table: string, name: string): void {
    this.begin(RecordAction.Del, RecordKind.Rule, family, 0, 'flush chain', name)
      .str(RULE.TABLE, table).str(RULE.CHAIN, name).end();
    this.stream.w.u16(0);
  }

  addRule(family: NfFamily, table: string, chain: string, body: Buffer): void {
    this.begin(RecordAction.New, RecordKind.Rule, family, NLM_F_CREATE | NLM_F_APPEND, 'add rule', chain)
      .str(RULE.TABLE, table).str(RULE.CHAIN, chain).end();
    this.stream.w.bytes(body);
  }

  addSet(family: NfFamily, table: string, set: SetSpec): void {
    const a = this.begin(RecordAction.New, RecordKind.Set, family, NLM_F_CREATE, 'add set', set.name)
      .str(SET.TABLE, table).str(SET.NAME, set.name).u32(SET.FLAGS, set.flags)
      .u32(SET.KEY_TYPE, set.keyType).u32(SET.KEY_LEN, set.keyLen);
    if (set.dataType !== undefined) a.u32(SET.DATA_TYPE, set.dataType);
    if (set.dataLen !== undefined) a.u32(SET.DATA_LEN, set.dataLen);
    a.u32(SET.ID, this.setId++); // nf_tables_newset requires an id, unique within the batch
    if (set.size !== undefined) a.u32(SET.DESC_SIZE, set.size);
    if (set.concat) a.bytes(SET.DESC_CONCAT, Buffer.from(set.concat));
    a.end();
  }

  deleteSet(family: NfFamily, table: string, name: string): void {
    this.begin(RecordAction.Del, RecordKind.Set, family, 0, 'delete set', name).str(SET.TABLE, table).str(SET.NAME, name).end();
  }

  flushSet(family: NfFamily, table: string, name: string): void {
    this.begin(RecordAction.Del, RecordKind.SetElem, family, 0, 'flush set', name).str(SET.TABLE, table).str(SET.NAME, name).end();
    this.stream.w.u32(0);
  }

  addElements(family: NfFamily, table: string, set: string, elements: ElementState[]): void {
    // NLM_F_CREATE without EXCL: adding an element that exists with the same data is not an error.
    this.elements(RecordAction.New, NLM_F_CREATE, family, table, set, elements);
  }

  /** Adds, failing with EEXIST if an element exists already (used where a duplicate means a bug). */
  createElements(family: NfFamily, table: string, set: string, elements: ElementState[]): void {
    this.elements(RecordAction.New, NLM_F_CREATE | NLM_F_EXCL, family, table, set, elements);
  }

  deleteElements(family: NfFamily, table: string, set: string, elements: ElementState[]): void {
    this.elements(RecordAction.Del, 0, family, table, set, elements.map((e) => ({ key: e.key, keyEnd: e.keyEnd, flags: e.flags })));
  }

  private elements(action: RecordAction, flags: number, family: NfFamily, table: string, set: string, elements: ElementState[]): void {
    // Element comments repeat (every element of a Service port carries its name): encode each once.
    let lastComment: string | undefined;
    let lastUdata: Buffer = Buffer.alloc(0);
    const udata = (c: string): Buffer => {
      if (c !== lastComment) {
        lastComment = c;
        lastUdata = encodeElementComment(c);
      }
      return lastUdata;
    };
    let i = 0;
    while (i < elements.length) {
      let bytes = 0;
      let j = i;
      while (j < elements.length && (j === i || bytes < ELEMENT_CHUNK_BYTES)) {
        const e = elements[j];
        bytes += 48 + e.key.length + (e.keyEnd ? 8 + e.keyEnd.length : 0) + (e.chain ? e.chain.length : 0) + (e.data ? e.data.length : 0) +
          (e.comment !== undefined ? 8 + udata(e.comment).length : 0);
        j++;
      }
      const verb = action === RecordAction.New ? 'add elements' : 'delete elements';
      this.begin(action, RecordKind.SetElem, family, flags, verb, set)
        .str(SET.TABLE, table).str(SET.NAME, set).end();
      this.stream.w.u32(j - i);
      for (let k = i; k < j; k++) {
        const e = elements[k];
        const a = new RecordAttrWriter(this.stream.w);
        if (e.flags) a.u32(ELEM.FLAGS, e.flags);
        a.bytes(ELEM.KEY, e.key);
        if (e.keyEnd !== undefined) a.bytes(ELEM.KEY_END, e.keyEnd);
        if (e.verdict !== undefined) a.u32(ELEM.VERDICT, e.verdict);
        if (e.chain !== undefined) a.str(ELEM.CHAIN, e.chain);
        if (e.data !== undefined) a.bytes(ELEM.DATA, e.data);
        if (e.comment !== undefined) a.bytes(ELEM.USERDATA, udata(e.comment));
        a.end();
      }
      i = j;
    }
  }
}
