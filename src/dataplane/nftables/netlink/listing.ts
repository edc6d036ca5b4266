// Listing other writers' nftables objects over plain nfnetlink (include/uapi/linux/netfilter/nf_tables.h), pure:
// dump requests for every table, every chain and one table's rules, and decoders that keep only what tells
// whether a base chain can take a packet (hook, priority, policy, and each rule's terminal expressions). svcplane's
// own tables are read through the addon's record stream (state.ts); this is for tables svcplane never writes,
// which it must be able to describe without libnftnl knowing their expressions.
import { NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST, Attrs, parseHeader } from '../../../netlink/message';
import { NetlinkWriter, oneMessage } from '../../../netlink/writer';

const NFNL_SUBSYS_NFTABLES = 10;
const NFGENMSG_LEN = 4;
const MSG = { NEWTABLE: 0, GETTABLE: 1, NEWCHAIN: 3, GETCHAIN: 4, NEWRULE: 6, GETRULE: 7 } as const;
const NFTA_TABLE = { NAME: 1, FLAGS: 2 } as const;
const NFTA_CHAIN = { TABLE: 1, NAME: 3, HOOK: 4, POLICY: 5, TYPE: 7 } as const;
const NFTA_HOOK = { HOOKNUM: 1, PRIORITY: 2 } as const;
const NFTA_RULE = { TABLE: 1, CHAIN: 2, EXPRESSIONS: 4 } as const;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR = { NAME: 1, DATA: 2 } as const;
const NFTA_IMMEDIATE = { DREG: 1, DATA: 2 } as const;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT = { CODE: 1, CHAIN: 2 } as const;
const NFTA_LOOKUP_DREG = 3;
const NFTA_NAT_TYPE = 1;
const NFT_REG_VERDICT = 0;

/** NFPROTO_UNSPEC: a dump of every family. */
export const NFPROTO_UNSPEC = 0;
export const NFPROTO_INET = 1;

export interface ListedTable {
  family: number;
  name: string;
  flags: number;
}

export interface ListedChain {
  family: number;
  table: string;
  name: string;
  /** Base chains only (regular chains have no hook). */
  hook?: { type: string; hooknum: number; priority: number; policy: number };
}

/** What a rule can do to a packet beyond matching: its expressions' names and its verdicts. */
export interface ListedRule {
  family: number;
  table: string;
  chain: string;
  /** Expression names in order ("payload", "cmp", "nat", "immediate", ...). */
  exprs: string[];
  /** Verdict codes set by immediate expressions (NF_DROP 0, NF_ACCEPT 1, NFT_JUMP -3, NFT_GOTO -4, ...). */
  verdicts: number[];
  /** Chains a jump or goto of the rule enters. */
  targets: string[];
  /** The rule looks a verdict up in a map (a vmap): any verdict, or a jump, may come out of it. */
  verdictMap: boolean;
  /** Its nat expressions' kinds. */
  nat: Array<'snat' | 'dnat'>;
}

const msgType = (msg: number) => (NFNL_SUBSYS_NFTABLES << 8) | msg;

function request(msg: number, family: number, attrs?: (w: NetlinkWriter) => void): Buffer {
  return oneMessage((w) => {
    w.begin(msgType(msg), NLM_F_REQUEST | NLM_F_DUMP);
    w.header([family, 0, 0, 0]); // nfgenmsg: family, version NFNETLINK_V0, res_id
    attrs?.(w);
    w.end();
  });
}

export const dumpTablesRequest = (family = NFPROTO_UNSPEC) => request(MSG.GETTABLE, family);
export const dumpChainsRequest = (family = NFPROTO_UNSPEC) => request(MSG.GETCHAIN, family);
/** Every rule of one table (the kernel filters by NFTA_RULE_TABLE). */
export const dumpRulesRequest = (family: number, table: string) => request(MSG.GETRULE, family, (w) => w.string(NFTA_RULE.TABLE, table));

/** The family and attributes of an nf_tables reply of the given kind, or undefined for anything else. */
function body(msg: Buffer, kind: number): { family: number; attrs: Attrs } | undefined {
  const h = parseHeader(msg);
  if (h.type !== msgType(kind) || msg.length < NLMSG_HDRLEN + NFGENMSG_LEN) return undefined;
  return { family: msg.readUInt8(NLMSG_HDRLEN), attrs: new Attrs(msg, NLMSG_HDRLEN + NFGENMSG_LEN, Math.min(h.len, msg.length)) };
}

const be32 = (a: Attrs | undefined, type: number) => a?.get(type)?.readUInt32BE(0);

export function decodeTable(msg: Buffer): ListedTable | undefined {
  const b = body(msg, MSG.NEWTABLE);
  const name = b?.attrs.string(NFTA_TABLE.NAME);
  if (!b || name === undefined) return undefined;
  return { family: b.family, name, flags: be32(b.attrs, NFTA_TABLE.FLAGS) ?? 0 };
}

export function decodeChain(msg: Buffer): ListedChain | undefined {
  const b = body(msg, MSG.NEWCHAIN);
  const table = b?.attrs.string(NFTA_CHAIN.TABLE);
  const name = b?.attrs.string(NFTA_CHAIN.NAME);
  if (!b || table === undefined || name === undefined) return undefined;
  const out: ListedChain = { family: b.family, table, name };
  const hook = b.attrs.nested(NFTA_CHAIN.HOOK);
  const hooknum = be32(hook, NFTA_HOOK.HOOKNUM);
  if (hook && hooknum !== undefined) {
    out.hook = {
      type: b.attrs.string(NFTA_CHAIN.TYPE) ?? 'filter',
      hooknum,
      priority: hook.get(NFTA_HOOK.PRIORITY)?.readInt32BE(0) ?? 0,
      policy: be32(b.attrs, NFTA_CHAIN.POLICY) ?? 1,
    };
  }
  return out;
}

export function decodeRule(msg: Buffer): ListedRule | undefined {
  const b = body(msg, MSG.NEWRULE);
  const table = b?.attrs.string(NFTA_RULE.TABLE);
  const chain = b?.attrs.string(NFTA_RULE.CHAIN);
  if (!b || table === undefined || chain === undefined) return undefined;
  const out: ListedRule = { family: b.family, table, chain, exprs: [], verdicts: [], targets: [], verdictMap: false, nat: [] };
  for (const elem of b.attrs.nested(NFTA_RULE.EXPRESSIONS)?.all(NFTA_LIST_ELEM) ?? []) {
    const e = new Attrs(elem);
    const name = e.string(NFTA_EXPR.NAME) ?? '?';
    out.exprs.push(name);
    const data = e.nested(NFTA_EXPR.DATA);
    if (name === 'immediate' && be32(data, NFTA_IMMEDIATE.DREG) === NFT_REG_VERDICT) {
      const verdict = data?.nested(NFTA_IMMEDIATE.DATA)?.nested(NFTA_DATA_VERDICT);
      const code = verdict?.get(NFTA_VERDICT.CODE)?.readInt32BE(0);
      if (code !== undefined) out.verdicts.push(code);
      const target = verdict?.string(NFTA_VERDICT.CHAIN);
      if (target !== undefined) out.targets.push(target);
    }
    if (name === 'lookup' && be32(data, NFTA_LOOKUP_DREG) === NFT_REG_VERDICT) out.verdictMap = true;
    if (name === 'nat') out.nat.push(be32(data, NFTA_NAT_TYPE) === 1 ? 'dnat' : 'snat');
  }
  return out;
}
