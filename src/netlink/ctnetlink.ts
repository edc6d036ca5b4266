// ctnetlink messages (include/uapi/linux/netfilter/nfnetlink_conntrack.h), pure, encode and decode mirror images:
// a dump of the conntrack table *filtered by the kernel* (CTA_FILTER, Linux 5.8+: only entries matching the given
// original/reply tuple fields come back, so svcplane never reads the whole table), and the deletion of one entry
// by its original tuple and id (the id makes sure a newer flow with the same tuple is left alone).
import { type AttributeDecoder, throwIfFailed } from './attribute';
import { NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_HDRLEN, type NetlinkWriter, attributesOf, oneMessage, parseHeader } from './message';

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const IPCTNL_MSG_CT_GET_STATS = 5;
const NFGENMSG_LEN = 4; // { u8 family; u8 version; be16 res_id }
const AF_INET = 2;
const AF_INET6 = 10;

const CTA = { TUPLE_ORIG: 1, TUPLE_REPLY: 2, ID: 12, ZONE: 18, FILTER: 25 } as const;
const CTA_TUPLE = { IP: 1, PROTO: 2 } as const;
const CTA_IP = { V4_SRC: 1, V4_DST: 2, V6_SRC: 3, V6_DST: 4 } as const;
const CTA_PROTO = { NUM: 1, SRC_PORT: 2, DST_PORT: 3 } as const;
const CTA_FILTER = { ORIG_FLAGS: 1, REPLY_FLAGS: 2 } as const;
/** CTA_FILTER_F_*: which tuple fields a filter compares. */
export const CT_FILTER = { IP_SRC: 1 << 0, IP_DST: 1 << 1, PROTO_NUM: 1 << 3, PROTO_SRC_PORT: 1 << 4, PROTO_DST_PORT: 1 << 5 } as const;

export const IPPROTO_UDP = 17;

export interface CtTuple {
  src?: string;
  dst?: string;
  proto?: number;
  sport?: number;
  dport?: number;
}

export interface CtEntry {
  family: 4 | 6;
  orig: CtTuple;
  reply: CtTuple;
  id?: number;
  zone?: number;
}

/** What a filtered dump asks for: fields of the original and reply tuples (unset fields match anything). */
export interface CtFilter {
  family: 4 | 6;
  orig: CtTuple;
  reply: CtTuple;
}

const ctType = (msg: number) => (NFNL_SUBSYS_CTNETLINK << 8) | msg;

function nfgen(w: NetlinkWriter, family: 4 | 6): void {
  w.header([family === 4 ? AF_INET : AF_INET6, 0, 0, 0]);
}

function flagsOf(t: CtTuple): number {
  let f = 0;
  if (t.src !== undefined) f |= CT_FILTER.IP_SRC;
  if (t.dst !== undefined) f |= CT_FILTER.IP_DST;
  // Ports are parsed by the protocol's handler: the protocol number must come with them.
  if (t.proto !== undefined || t.sport !== undefined || t.dport !== undefined) f |= CT_FILTER.PROTO_NUM;
  if (t.sport !== undefined) f |= CT_FILTER.PROTO_SRC_PORT;
  if (t.dport !== undefined) f |= CT_FILTER.PROTO_DST_PORT;
  return f;
}

function tuple(w: NetlinkWriter, type: number, family: 4 | 6, t: CtTuple): void {
  const n = w.nestStart(type);
  if (t.src !== undefined || t.dst !== undefined) {
    const ip = w.nestStart(CTA_TUPLE.IP);
    if (t.src !== undefined) w.ip(family === 4 ? CTA_IP.V4_SRC : CTA_IP.V6_SRC, t.src);
    if (t.dst !== undefined) w.ip(family === 4 ? CTA_IP.V4_DST : CTA_IP.V6_DST, t.dst);
    w.nestEnd(ip);
  }
  if (t.proto !== undefined || t.sport !== undefined || t.dport !== undefined) {
    const p = w.nestStart(CTA_TUPLE.PROTO);
    w.u8(CTA_PROTO.NUM, t.proto ?? 0);
    if (t.sport !== undefined) w.be16(CTA_PROTO.SRC_PORT, t.sport);
    if (t.dport !== undefined) w.be16(CTA_PROTO.DST_PORT, t.dport);
    w.nestEnd(p);
  }
  w.nestEnd(n);
}

/**
 * The conntrack table's global statistics (ctnetlink_stat_ct): a harmless read whose answer says ctnetlink is
 * there (nf_conntrack_netlink loaded) and lets svcplane in.
 */
export function writeStatsRequest(w: NetlinkWriter): void {
  w.begin(ctType(IPCTNL_MSG_CT_GET_STATS), NLM_F_REQUEST | NLM_F_ACK);
  nfgen(w, 4);
  w.end();
}

/** A dump of the entries matching `f`, filtered in the kernel. */
export function writeFilteredDump(w: NetlinkWriter, f: CtFilter): void {
  w.begin(ctType(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP);
  nfgen(w, f.family);
  if (flagsOf(f.orig)) tuple(w, CTA.TUPLE_ORIG, f.family, f.orig);
  if (flagsOf(f.reply)) tuple(w, CTA.TUPLE_REPLY, f.family, f.reply);
  const n = w.nestStart(CTA.FILTER);
  // Host order (nla_get_u32), unlike CTA_ID below (nla_get_be32).
  w.u32(CTA_FILTER.ORIG_FLAGS, flagsOf(f.orig)).u32(CTA_FILTER.REPLY_FLAGS, flagsOf(f.reply));
  w.nestEnd(n);
  w.end();
}

/** A dump of every entry of one family (the kernel filters by family only). */
export function writeDump(w: NetlinkWriter, family: 4 | 6): void {
  w.begin(ctType(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP);
  nfgen(w, family);
  w.end();
}

/** Deletes one entry: its original tuple, its id (and zone). */
export function writeDelete(w: NetlinkWriter, e: CtEntry): void {
  w.begin(ctType(IPCTNL_MSG_CT_DELETE), NLM_F_REQUEST | NLM_F_ACK);
  nfgen(w, e.family);
  tuple(w, CTA.TUPLE_ORIG, e.family, e.orig);
  if (e.id !== undefined) w.be32(CTA.ID, e.id);
  if (e.zone) w.be16(CTA.ZONE, e.zone);
  w.end();
}

export const filteredDumpRequest = (f: CtFilter) => oneMessage((w) => writeFilteredDump(w, f));
export const deleteRequest = (e: CtEntry) => oneMessage((w) => writeDelete(w, e));

function decodeTuple(d: AttributeDecoder): CtTuple {
  const t: CtTuple = {};
  while (d.next()) {
    if (d.type() === CTA_TUPLE.IP) d.nested((ip) => {
      while (ip.next()) {
        switch (ip.type()) {
          case CTA_IP.V4_SRC: case CTA_IP.V6_SRC: t.src = ip.ip(); break;
          case CTA_IP.V4_DST: case CTA_IP.V6_DST: t.dst = ip.ip(); break;
        }
      }
    });
    else if (d.type() === CTA_TUPLE.PROTO) d.nested((p) => {
      while (p.next()) {
        switch (p.type()) {
          case CTA_PROTO.NUM: t.proto = p.u8(); break;
          case CTA_PROTO.SRC_PORT: t.sport = p.be16(); break;
          case CTA_PROTO.DST_PORT: t.dport = p.be16(); break;
        }
      }
    });
  }
  return t;
}

/** A conntrack entry (a dump reply, or a delete request read back). */
export function decodeEntry(msg: Buffer): CtEntry | undefined {
  const h = parseHeader(msg);
  if (h.type >> 8 !== NFNL_SUBSYS_CTNETLINK) return undefined;
  const fam = msg.readUInt8(NLMSG_HDRLEN);
  if (fam !== AF_INET && fam !== AF_INET6) return undefined;
  const d = attributesOf(msg, NFGENMSG_LEN);
  const e: CtEntry = { family: fam === AF_INET ? 4 : 6, orig: {}, reply: {} };
  while (d.next()) {
    switch (d.type()) {
      case CTA.TUPLE_ORIG: d.nested((t) => (e.orig = decodeTuple(t))); break;
      case CTA.TUPLE_REPLY: d.nested((t) => (e.reply = decodeTuple(t))); break;
      case CTA.ID: e.id = d.be32(); break;
      case CTA.ZONE: {
        const zone = d.be16();
        if (zone) e.zone = zone;
        break;
      }
    }
  }
  throwIfFailed(d, 'conntrack entry');
  return e;
}

/** The filter a dump request carries (for tests: the mirror of writeFilteredDump). */
export function decodeFilter(msg: Buffer): { orig: number; reply: number } | undefined {
  const d = attributesOf(msg, NFGENMSG_LEN);
  let f: { orig: number; reply: number } | undefined;
  while (d.next()) {
    if (d.type() === CTA.FILTER) d.nested((n) => {
      const flags = { orig: 0, reply: 0 };
      while (n.next()) {
        if (n.type() === CTA_FILTER.ORIG_FLAGS) flags.orig = n.u32();
        else if (n.type() === CTA_FILTER.REPLY_FLAGS) flags.reply = n.u32();
      }
      f = flags;
    });
  }
  throwIfFailed(d, 'conntrack filter');
  return f;
}
