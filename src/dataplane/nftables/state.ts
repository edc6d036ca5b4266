// Decodes a dumped table (record stream from the addon) into a TableState, canonicalising rules so they compare
// byte-for-byte with rules the ruleset builds.
import {
  CHAIN, ELEM, NfFamily, RULE, RecordKind, SET, TABLE, UDATA_SET_ELEM_COMMENT,
} from './netlink/constants';
import { canonicalRuleBody } from './netlink/expr';
import { attrI32, attrString, attrU32, decodeRecords } from './netlink/records';
import { ChainState, ElementState, TableState, elementKey, emptyTable } from './objects';

export interface DecodedTable {
  state: TableState;
  /** Rule handles per chain, in order (for surgical deletes and for status). */
  handles: Map<string, bigint[]>;
}

/** The comment TLV in an element's user data, if any. */
function commentOf(udata: Buffer): string | undefined {
  for (let off = 0; off + 2 <= udata.length; ) {
    const type = udata[off];
    const len = udata[off + 1];
    if (type === UDATA_SET_ELEM_COMMENT) {
      const v = udata.subarray(off + 2, off + 2 + len);
      const nul = v.indexOf(0);
      return v.toString('utf8', 0, nul < 0 ? v.length : nul);
    }
    off += 2 + len;
  }
  return undefined;
}

export function decodeTable(family: NfFamily, records: Buffer): DecodedTable | undefined {
  const decoded = decodeRecords(records);
  const tableRec = decoded.find((r) => r.kind === RecordKind.Table);
  if (!tableRec) return undefined;
  const state = emptyTable(family, attrString(tableRec.attrs, TABLE.NAME) ?? '');
  const handles = new Map<string, bigint[]>();
  for (const r of decoded) {
    switch (r.kind) {
      case RecordKind.Chain: {
        const name = attrString(r.attrs, CHAIN.NAME) ?? '';
        const chain: ChainState = { name, rules: [] };
        const type = attrString(r.attrs, CHAIN.TYPE);
        const hook = attrU32(r.attrs, CHAIN.HOOKNUM);
        if (type !== undefined && hook !== undefined) {
          chain.base = { type: type as 'filter' | 'nat', hook, priority: attrI32(r.attrs, CHAIN.PRIO) ?? 0 };
        }
        state.chains.set(name, chain);
        handles.set(name, []);
        break;
      }
      case RecordKind.Set: {
        const name = attrString(r.attrs, SET.NAME) ?? '';
        const flags = attrU32(r.attrs, SET.FLAGS) ?? 0;
        state.sets.set(name, {
          name,
          flags,
          keyType: attrU32(r.attrs, SET.KEY_TYPE) ?? 0,
          keyLen: attrU32(r.attrs, SET.KEY_LEN) ?? 0,
          dataType: attrU32(r.attrs, SET.DATA_TYPE),
          dataLen: attrU32(r.attrs, SET.DATA_LEN),
        });
        break;
      }
      case RecordKind.SetElem: {
        const name = attrString(r.attrs, SET.NAME) ?? '';
        const elems = new Map<string, ElementState>();
        for (const c of r.children) {
          const key = c.get(ELEM.KEY);
          if (!key) continue;
          const e: ElementState = { key: Buffer.from(key) };
          const flags = attrU32(c, ELEM.FLAGS);
          if (flags) e.flags = flags;
          const verdict = attrI32(c, ELEM.VERDICT);
          if (verdict !== undefined) e.verdict = verdict;
          const chain = attrString(c, ELEM.CHAIN);
          if (chain !== undefined) e.chain = chain;
          const data = c.get(ELEM.DATA);
          if (data && verdict === undefined) e.data = Buffer.from(data);
          const udata = c.get(ELEM.USERDATA);
          if (udata) {
            const comment = commentOf(udata);
            if (comment !== undefined) e.comment = comment;
          }
          elems.set(elementKey(e), e);
        }
        state.elements.set(name, elems);
        break;
      }
      case RecordKind.Rule: {
        const chainName = attrString(r.attrs, RULE.CHAIN) ?? '';
        const chain = state.chains.get(chainName);
        if (!chain) break;
        chain.rules.push(canonicalRuleBody(r.children));
        const h = r.attrs.get(RULE.HANDLE);
        handles.get(chainName)?.push(h && h.length === 8 ? h.readBigUInt64LE(0) : 0n);
        break;
      }
      default:
        break;
    }
  }
  return { state, handles };
}
