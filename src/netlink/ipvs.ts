// IPVS over generic netlink (include/uapi/linux/ip_vs.h), pure: each command's encoder has a decoder mirroring it
// (moby/ipvs netlink_linux.go's structure), so tests round-trip every message and dumps decode with the same
// definitions.
import { bytesToIp } from '../model/ip';
import { type AttributeDecoder, encodeAttributes, throwIfFailed } from './attribute';
import { beginGenl, parseGenl } from './genl';
import { NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, type NetlinkWriter, oneMessage } from './message';

export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

export const CMD = {
  NEW_SERVICE: 1, SET_SERVICE: 2, DEL_SERVICE: 3, GET_SERVICE: 4,
  NEW_DEST: 5, SET_DEST: 6, DEL_DEST: 7, GET_DEST: 8,
  SET_CONFIG: 12, GET_CONFIG: 13, GET_INFO: 15, FLUSH: 17,
} as const;

const CMD_ATTR = { SERVICE: 1, DEST: 2 } as const;
const SVC = { AF: 1, PROTOCOL: 2, ADDR: 3, PORT: 4, FWMARK: 5, SCHED_NAME: 6, FLAGS: 7, TIMEOUT: 8, NETMASK: 9, STATS: 10, PE_NAME: 11, STATS64: 12 } as const;
const DEST = { ADDR: 1, PORT: 2, FWD_METHOD: 3, WEIGHT: 4, U_THRESH: 5, L_THRESH: 6, ACTIVE_CONNS: 7, INACT_CONNS: 8, PERSIST_CONNS: 9, STATS: 10, ADDR_FAMILY: 11, STATS64: 12 } as const;
const STATS = { CONNS: 1, INPKTS: 2, OUTPKTS: 3, INBYTES: 4, OUTBYTES: 5, CPS: 6, INPPS: 7, OUTPPS: 8, INBPS: 9, OUTBPS: 10 } as const;

/** Virtual service flags (IP_VS_SVC_F_*). */
export const SVC_FLAG = { PERSISTENT: 0x1, HASHED: 0x2, ONEPACKET: 0x4, SCHED1: 0x8, SCHED2: 0x10, SCHED3: 0x20 } as const;
/** Forwarding methods (IP_VS_CONN_F_FWD_MASK values). */
export const FWD = { MASQ: 0, LOCALNODE: 1, TUNNEL: 2, DROUTE: 3, BYPASS: 4 } as const;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const PROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;
export type IpvsProtocol = keyof typeof PROTO;

export interface VirtualServiceKey {
  family: 4 | 6;
  protocol: IpvsProtocol;
  address: string;
  port: number;
}

export interface VirtualService extends VirtualServiceKey {
  scheduler: string;
  /** IP_VS_SVC_F_* (HASHED is set by the kernel and ignored when comparing). */
  flags: number;
  /** Persistence timeout, seconds (with SVC_FLAG.PERSISTENT). */
  timeout: number;
  /** Persistence netmask: a prefix mask for IPv4 (0xffffffff), a prefix length for IPv6 (128). */
  netmask: number;
}

export interface Stats {
  conns: bigint;
  inPackets: bigint;
  outPackets: bigint;
  inBytes: bigint;
  outBytes: bigint;
}

export interface RealServer {
  address: string;
  port: number;
  weight: number;
  forward: number;
  upperThreshold: number;
  lowerThreshold: number;
}

export interface RealServerState extends RealServer {
  activeConns: number;
  inactiveConns: number;
  persistConns: number;
  stats?: Stats;
}

export interface VirtualServiceState extends VirtualService {
  stats?: Stats;
}

const famAF = (f: 4 | 6) => (f === 4 ? AF_INET : AF_INET6);

function protocolName(p: number): IpvsProtocol | undefined {
  return (Object.keys(PROTO) as IpvsProtocol[]).find((k) => PROTO[k] === p);
}

// Requests are written into a NetlinkWriter (one buffer for a whole sync); the *Request functions return one
// message as its own Buffer (tests, one-off requests). `family` is the IPVS generic netlink family id.
const ACKED = NLM_F_REQUEST | NLM_F_ACK;

// A service's key attributes are written again for each of its real servers: the last one is kept as bytes
// (a sync writes a service's messages one after another), so its address is parsed once, not once per message.
let lastKeyOf: VirtualServiceKey | undefined;
let lastKey: Buffer = Buffer.alloc(0);

function serviceKey(w: NetlinkWriter, s: VirtualServiceKey): void {
  if (s !== lastKeyOf) {
    lastKey = encodeAttributes((x) => x.u16(SVC.AF, famAF(s.family)).u16(SVC.PROTOCOL, PROTO[s.protocol]).ip(SVC.ADDR, s.address, 16).be16(SVC.PORT, s.port));
    lastKeyOf = s;
  }
  w.raw(lastKey);
}

function begin(w: NetlinkWriter, family: number, cmd: number, flags = ACKED): NetlinkWriter {
  return beginGenl(w, family, flags, cmd, IPVS_GENL_VERSION);
}

function writeService(w: NetlinkWriter, family: number, cmd: number, s: VirtualService): void {
  begin(w, family, cmd);
  const n = w.nestStart(CMD_ATTR.SERVICE);
  serviceKey(w, s);
  // flags, then the mask of flags to apply: every flag is as given.
  w.string(SVC.SCHED_NAME, s.scheduler).u32pair(SVC.FLAGS, s.flags & ~SVC_FLAG.HASHED, 0xffffffff).u32(SVC.TIMEOUT, s.timeout).u32(SVC.NETMASK, s.netmask);
  w.nestEnd(n).end();
}

export const writeNewService = (w: NetlinkWriter, family: number, s: VirtualService) => writeService(w, family, CMD.NEW_SERVICE, s);
export const writeSetService = (w: NetlinkWriter, family: number, s: VirtualService) => writeService(w, family, CMD.SET_SERVICE, s);

export function writeDelService(w: NetlinkWriter, family: number, s: VirtualServiceKey): void {
  begin(w, family, CMD.DEL_SERVICE);
  const n = w.nestStart(CMD_ATTR.SERVICE);
  serviceKey(w, s);
  w.nestEnd(n).end();
}

function writeDest(w: NetlinkWriter, family: number, cmd: number, s: VirtualServiceKey, d: Pick<RealServer, 'address' | 'port'> & Partial<RealServer>, full: boolean): void {
  begin(w, family, cmd);
  let n = w.nestStart(CMD_ATTR.SERVICE);
  serviceKey(w, s);
  w.nestEnd(n);
  n = w.nestStart(CMD_ATTR.DEST);
  w.ip(DEST.ADDR, d.address, 16).be16(DEST.PORT, d.port).u16(DEST.ADDR_FAMILY, famAF(d.address.includes(':') ? 6 : 4));
  if (full) w.u32(DEST.FWD_METHOD, d.forward ?? 0).u32(DEST.WEIGHT, d.weight ?? 0).u32(DEST.U_THRESH, d.upperThreshold ?? 0).u32(DEST.L_THRESH, d.lowerThreshold ?? 0);
  w.nestEnd(n).end();
}

export const writeNewDest = (w: NetlinkWriter, family: number, s: VirtualServiceKey, d: RealServer) => writeDest(w, family, CMD.NEW_DEST, s, d, true);
export const writeSetDest = (w: NetlinkWriter, family: number, s: VirtualServiceKey, d: RealServer) => writeDest(w, family, CMD.SET_DEST, s, d, true);
export const writeDelDest = (w: NetlinkWriter, family: number, s: VirtualServiceKey, d: Pick<RealServer, 'address' | 'port'>) => writeDest(w, family, CMD.DEL_DEST, s, d, false);

export function writeDumpDests(w: NetlinkWriter, family: number, s: VirtualServiceKey): void {
  begin(w, family, CMD.GET_DEST, NLM_F_REQUEST | NLM_F_DUMP);
  const n = w.nestStart(CMD_ATTR.SERVICE);
  serviceKey(w, s);
  w.nestEnd(n).end();
}

export const newServiceRequest = (family: number, s: VirtualService) => oneMessage((w) => writeNewService(w, family, s));
export const setServiceRequest = (family: number, s: VirtualService) => oneMessage((w) => writeSetService(w, family, s));
export const delServiceRequest = (family: number, s: VirtualServiceKey) => oneMessage((w) => writeDelService(w, family, s));
export const dumpServicesRequest = (family: number) => oneMessage((w) => begin(w, family, CMD.GET_SERVICE, NLM_F_REQUEST | NLM_F_DUMP).end());
export const newDestRequest = (family: number, s: VirtualServiceKey, d: RealServer) => oneMessage((w) => writeNewDest(w, family, s, d));
export const setDestRequest = (family: number, s: VirtualServiceKey, d: RealServer) => oneMessage((w) => writeSetDest(w, family, s, d));
export const delDestRequest = (family: number, s: VirtualServiceKey, d: Pick<RealServer, 'address' | 'port'>) => oneMessage((w) => writeDelDest(w, family, s, d));
export const dumpDestsRequest = (family: number, s: VirtualServiceKey) => oneMessage((w) => writeDumpDests(w, family, s));

// ---- replies (and requests, decoded back) ------------------------------------------------------------------------

function decodeStats(d: AttributeDecoder, wide: boolean): Stats {
  const s: Stats = { conns: 0n, inPackets: 0n, outPackets: 0n, inBytes: 0n, outBytes: 0n };
  // IPVS_SVC_ATTR_STATS has 32-bit counters but 64-bit byte counts; IPVS_SVC_ATTR_STATS64 is 64-bit throughout.
  const n = () => (wide ? d.u64() : BigInt(d.u32()));
  while (d.next()) {
    switch (d.type()) {
      case STATS.CONNS: s.conns = n(); break;
      case STATS.INPKTS: s.inPackets = n(); break;
      case STATS.OUTPKTS: s.outPackets = n(); break;
      case STATS.INBYTES: s.inBytes = d.u64(); break;
      case STATS.OUTBYTES: s.outBytes = d.u64(); break;
    }
  }
  return s;
}

/** An address attribute: a union nf_inet_addr (16 bytes), of which an IPv4 address uses the first 4. */
function decodeAddr(d: AttributeDecoder, b: Buffer | undefined, af: number | undefined): string | undefined {
  if (!b) return undefined;
  const len = af === AF_INET6 ? 16 : 4;
  if (b.length < len) {
    d.fail(`IPVS address of ${b.length} bytes`);
    return undefined;
  }
  return bytesToIp(b.subarray(0, len));
}

/** The nest of type `nest` of a generic netlink message, decoded by `fn` (undefined if the message has none). */
function decodeNest<T>(msg: Buffer, nest: number, what: string, fn: (d: AttributeDecoder) => T): T | undefined {
  const d = parseGenl(msg).attrs;
  let out: T | undefined;
  while (d.next()) if (d.type() === nest) d.nested((n) => (out = fn(n)));
  throwIfFailed(d, what);
  return out;
}

/** A service attribute nest (from a dump reply or a request). */
export function decodeService(msg: Buffer): VirtualServiceState | undefined {
  return decodeNest(msg, CMD_ATTR.SERVICE, 'IPVS service', (d) => {
    let af: number | undefined;
    let proto = -1;
    let addr: Buffer | undefined;
    let fwmark = false;
    const s = { port: 0, scheduler: '', flags: 0, timeout: 0, netmask: 0 };
    let stats: Stats | undefined;
    let stats64: Stats | undefined;
    while (d.next()) {
      switch (d.type()) {
        case SVC.AF: af = d.u16(); break;
        case SVC.PROTOCOL: proto = d.u16(); break;
        case SVC.ADDR: addr = d.bytes(); break;
        case SVC.PORT: s.port = d.be16(); break;
        case SVC.FWMARK: fwmark = true; break;
        case SVC.SCHED_NAME: s.scheduler = d.string(); break;
        // flags, then the mask the kernel applied (all ones)
        case SVC.FLAGS: s.flags = d.u32pair()[0]; break;
        case SVC.TIMEOUT: s.timeout = d.u32(); break;
        case SVC.NETMASK: s.netmask = d.u32(); break;
        case SVC.STATS: d.nested((n) => (stats = decodeStats(n, false))); break;
        case SVC.STATS64: d.nested((n) => (stats64 = decodeStats(n, true))); break;
      }
    }
    const protocol = protocolName(proto);
    const address = decodeAddr(d, addr, af);
    if (!protocol || !address || fwmark && !addr) return undefined; // fwmark services are not ours
    return { family: af === AF_INET6 ? 6 : 4, protocol, address, ...s, stats: stats64 ?? stats };
  });
}

/** A destination attribute nest (from a dump reply or a request). */
export function decodeDest(msg: Buffer): RealServerState | undefined {
  return decodeNest(msg, CMD_ATTR.DEST, 'IPVS real server', (d) => {
    let af: number | undefined;
    let addr: Buffer | undefined;
    const r = { port: 0, weight: 0, forward: 0, upperThreshold: 0, lowerThreshold: 0, activeConns: 0, inactiveConns: 0, persistConns: 0 };
    let stats: Stats | undefined;
    let stats64: Stats | undefined;
    while (d.next()) {
      switch (d.type()) {
        case DEST.ADDR: addr = d.bytes(); break;
        case DEST.PORT: r.port = d.be16(); break;
        case DEST.FWD_METHOD: r.forward = d.u32() & 0x7; break;
        case DEST.WEIGHT: r.weight = d.u32(); break;
        case DEST.U_THRESH: r.upperThreshold = d.u32(); break;
        case DEST.L_THRESH: r.lowerThreshold = d.u32(); break;
        case DEST.ACTIVE_CONNS: r.activeConns = d.u32(); break;
        case DEST.INACT_CONNS: r.inactiveConns = d.u32(); break;
        case DEST.PERSIST_CONNS: r.persistConns = d.u32(); break;
        case DEST.ADDR_FAMILY: af = d.u16(); break;
        case DEST.STATS: d.nested((n) => (stats = decodeStats(n, false))); break;
        case DEST.STATS64: d.nested((n) => (stats64 = decodeStats(n, true))); break;
      }
    }
    const address = decodeAddr(d, addr, af);
    if (!address) return undefined;
    return { address, ...r, stats: stats64 ?? stats };
  });
}

/** The command of an IPVS message (for tests and error messages). */
export function commandOf(msg: Buffer): number {
  return parseGenl(msg).cmd;
}

export function serviceKeyString(s: VirtualServiceKey): string {
  return `${s.protocol} ${s.family === 6 ? `[${s.address}]` : s.address}:${s.port}`;
}
