// Decodes a dumped table (record stream from the addon) into a TableState, canonicalising rules so they compare
// byte-for-byte with rules the ruleset builds.
import { RecordKind, attrI32, attrString, attrU32, decodeRecords } from '../../native/recordStream';
import {
  CHAIN, ELEM, NfFamily, RULE, SET, TABLE,
} from './netlink/constants';
import { canonicalRuleBody } from './netlink/expr';
import { decodeElementComment } from './netlink/udata';
import { ChainState, ElementState, TableState, elementKey, emptyTable } from './objects';

export function decodeTable(family: NfFamily, records: Buffer): TableState | undefined {
  const decoded = decodeRecords(records);
  const tableRec = decoded.find((r) => r.kind === RecordKind.Table);
  if (!tableRec) return undefined;
  const state = emptyTable(family, attrString(tableRec.attrs, TABLE.NAME) ?? '');
  state.flags = attrU32(tableRec.attrs, TABLE.FLAGS) ?? 0;
  for (const r of decoded) {
    switch (r.kind) {
      case RecordKind.Chain: {
        const name = attrString(r.attrs, CHAIN.NAME) ?? '';
        const chain: ChainState = { name, rules: [] };
        const type = attrString(r.attrs, CHAIN.TYPE);
        const hook = attrU32(r.attrs, CHAIN.HOOKNUM);
        if (type !== undefined && hook !== undefined) {
          chain.base = { type: type as 'filter' | 'nat', hook, priority: attrI32(r.attrs, CHAIN.PRIO) ?? 0 };
          const policy = attrU32(r.attrs, CHAIN.POLICY);
          if (policy !== undefined) chain.policy = policy;
        }
        state.chains.set(name, chain);
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
          ...(r.attrs.get(SET.DESC_SIZE) ? { size: attrU32(r.attrs, SET.DESC_SIZE) } : {}),
          ...(r.attrs.get(SET.DESC_CONCAT) ? { concat: [...r.attrs.get(SET.DESC_CONCAT)!] } : {}),
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
          const keyEnd = c.get(ELEM.KEY_END);
          if (keyEnd) e.keyEnd = Buffer.from(keyEnd);
          const flags = attrU32(c, ELEM.FLAGS);
          if (flags) e.flags = flags;
          const verdict = attrI32(c, ELEM.VERDICT);
          if (verdict !== undefined) e.verdict = verdict;
          const chain = attrString(c, ELEM.CHAIN);
          if (chain !== undefined) e.chain = chain;
          const data = c.get(ELEM.DATA);
          if (data && verdict === undefined) e.data = Buffer.from(data);
          const exp = c.get(ELEM.EXPIRATION);
          if (exp && exp.length === 8) e.expiresMs = Number(exp.readBigUInt64LE(0));
          const udata = c.get(ELEM.USERDATA);
          if (udata) {
            const comment = decodeElementComment(udata);
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
        break;
      }
      default:
        break;
    }
  }
  return state;
}
