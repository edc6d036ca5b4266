// Listing other writers' nftables objects over plain nfnetlink (include/uapi/linux/netfilter/nf_tables.h), pure:
// dump requests for every table, every chain and one table's rules, and decoders that keep only what tells
// whether a base chain can take a packet (hook, priority, policy, and each rule's terminal expressions). svcplane's
// own tables are read through the addon's record stream (state.ts); this is for tables svcplane never writes,
// which it must be able to describe without libnftnl knowing their expressions.
import { type AttributeDecoder, throwIfFailed } from './attribute';
import { NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST, type NetlinkWriter, attributesOf, oneMessage, parseHeader } from './message';

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
function body(msg: Buffer, kind: number): { family: number; attrs: AttributeDecoder } | undefined {
  const h = parseHeader(msg);
  if (h.type !== msgType(kind) || msg.length < NLMSG_HDRLEN + NFGENMSG_LEN) return undefined;
  return { family: msg.readUInt8(NLMSG_HDRLEN), attrs: attributesOf(msg, NFGENMSG_LEN) };
}

// nf_tables integers are network order (nla_put_be32): the be32 getters. Signed ones (a hook's priority, a verdict
// code) are read as u32 and made signed with `| 0`.

export function decodeTable(msg: Buffer): ListedTable | undefined {
  const b = body(msg, MSG.NEWTABLE);
  if (!b) return undefined;
  const d = b.attrs;
  let name: string | undefined;
  let flags = 0;
  while (d.next()) {
    if (d.type() === NFTA_TABLE.NAME) name = d.string();
    else if (d.type() === NFTA_TABLE.FLAGS) flags = d.be32();
  }
  throwIfFailed(d, 'nf_tables table');
  return name === undefined ? undefined : { family: b.family, name, flags };
}

export function decodeChain(msg: Buffer): ListedChain | undefined {
  const b = body(msg, MSG.NEWCHAIN);
  if (!b) return undefined;
  const d = b.attrs;
  let table: string | undefined;
  let name: string | undefined;
  let type: string | undefined;
  let policy: number | undefined;
  let hooknum: number | undefined;
  let priority = 0;
  while (d.next()) {
    switch (d.type()) {
      case NFTA_CHAIN.TABLE: table = d.string(); break;
      case NFTA_CHAIN.NAME: name = d.string(); break;
      case NFTA_CHAIN.TYPE: type = d.string(); break;
      case NFTA_CHAIN.POLICY: policy = d.be32(); break;
      case NFTA_CHAIN.HOOK: d.nested((h) => {
        while (h.next()) {
          if (h.type() === NFTA_HOOK.HOOKNUM) hooknum = h.be32();
          else if (h.type() === NFTA_HOOK.PRIORITY) priority = h.be32() | 0;
        }
      }); break;
    }
  }
  throwIfFailed(d, 'nf_tables chain');
  if (table === undefined || name === undefined) return undefined;
  const out: ListedChain = { family: b.family, table, name };
  if (hooknum !== undefined) out.hook = { type: type ?? 'filter', hooknum, priority, policy: policy ?? 1 };
  return out;
}

/** An expression: its name, and its data (NFTA_EXPR_DATA) kept to be read once the name is known. */
function decodeExpr(d: AttributeDecoder): { name: string; data?: Buffer } {
  const e: { name: string; data?: Buffer } = { name: '?' };
  while (d.next()) {
    if (d.type() === NFTA_EXPR.NAME) e.name = d.string();
    else if (d.type() === NFTA_EXPR.DATA) e.data = d.bytes();
  }
  return e;
}

/** An immediate's NFTA_IMMEDIATE_DATA: the verdict it holds, if it holds one. */
function decodeVerdict(d: AttributeDecoder): { code?: number; target?: string } {
  const v: { code?: number; target?: string } = {};
  while (d.next()) {
    if (d.type() === NFTA_DATA_VERDICT) d.nested((n) => {
      while (n.next()) {
        if (n.type() === NFTA_VERDICT.CODE) v.code = n.be32() | 0;
        else if (n.type() === NFTA_VERDICT.CHAIN) v.target = n.string();
      }
    });
  }
  return v;
}

export function decodeRule(msg: Buffer): ListedRule | undefined {
  const b = body(msg, MSG.NEWRULE);
  if (!b) return undefined;
  const d = b.attrs;
  let table: string | undefined;
  let chain: string | undefined;
  const exprs: Array<{ name: string; data?: Buffer }> = [];
  while (d.next()) {
    switch (d.type()) {
      case NFTA_RULE.TABLE: table = d.string(); break;
      case NFTA_RULE.CHAIN: chain = d.string(); break;
      case NFTA_RULE.EXPRESSIONS: d.nested((list) => {
        while (list.next()) if (list.type() === NFTA_LIST_ELEM) list.nested((e) => exprs.push(decodeExpr(e)));
      }); break;
    }
  }
  throwIfFailed(d, 'nf_tables rule');
  if (table === undefined || chain === undefined) return undefined;
  const out: ListedRule = { family: b.family, table, chain, exprs: [], verdicts: [], targets: [], verdictMap: false, nat: [] };
  for (const { name, data } of exprs) {
    out.exprs.push(name);
    // The data's attributes mean what the expression's name says.
    let dreg: number | undefined;
    let natType: number | undefined;
    let verdict: { code?: number; target?: string } = {};
    if (data) d.decode(data, (x) => {
      while (x.next()) {
        if (name === 'immediate' && x.type() === NFTA_IMMEDIATE.DREG) dreg = x.be32();
        else if (name === 'immediate' && x.type() === NFTA_IMMEDIATE.DATA) x.nested((v) => (verdict = decodeVerdict(v)));
        else if (name === 'lookup' && x.type() === NFTA_LOOKUP_DREG) dreg = x.be32();
        else if (name === 'nat' && x.type() === NFTA_NAT_TYPE) natType = x.be32();
      }
    });
    if (name === 'immediate' && dreg === NFT_REG_VERDICT) {
      if (verdict.code !== undefined) out.verdicts.push(verdict.code);
      if (verdict.target !== undefined) out.targets.push(verdict.target);
    }
    if (name === 'lookup' && dreg === NFT_REG_VERDICT) out.verdictMap = true;
    if (name === 'nat') out.nat.push(natType === 1 ? 'dnat' : 'snat');
  }
  throwIfFailed(d, 'nf_tables rule');
  return out;
}
