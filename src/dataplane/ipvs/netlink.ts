// IPVS over generic netlink (include/uapi/linux/ip_vs.h), pure: each command's encoder has a decoder mirroring it
// (moby/ipvs netlink_linux.go's structure), so tests round-trip every message and dumps decode with the same
// definitions.
import { ipToBytes, bytesToIp } from '../../model/ip';
import { genlmsg, parseGenl } from '../../netlink/genl';
import { AttrWriter, type Attrs, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from '../../netlink/message';

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

/** union nf_inet_addr: 16 bytes, an IPv4 address in the first 4. */
function inetAddr(ip: string): Buffer {
  const b = Buffer.alloc(16);
  ipToBytes(ip).copy(b);
  return b;
}

function protocolName(p: number): IpvsProtocol | undefined {
  return (Object.keys(PROTO) as IpvsProtocol[]).find((k) => PROTO[k] === p);
}

function serviceKeyAttrs(w: AttrWriter, s: VirtualServiceKey): void {
  w.u16(SVC.AF, famAF(s.family)).u16(SVC.PROTOCOL, PROTO[s.protocol]).binary(SVC.ADDR, inetAddr(s.address)).be16(SVC.PORT, s.port);
}

function serviceAttrs(s: VirtualService): AttrWriter {
  return new AttrWriter().nested(CMD_ATTR.SERVICE, (w) => {
    serviceKeyAttrs(w, s);
    const flags = Buffer.alloc(8);
    flags.writeUInt32LE(s.flags & ~SVC_FLAG.HASHED, 0);
    flags.writeUInt32LE(0xffffffff, 4); // mask: every flag is as given
    w.string(SVC.SCHED_NAME, s.scheduler).binary(SVC.FLAGS, flags).u32(SVC.TIMEOUT, s.timeout).u32(SVC.NETMASK, s.netmask);
  });
}

const req = (cmd: number, attrs?: AttrWriter, family = 0, flags = NLM_F_REQUEST | NLM_F_ACK) => genlmsg(family, cmd, IPVS_GENL_VERSION, flags, attrs);

// ---- requests ------------------------------------------------------------------------------------------------
// `family` is the IPVS generic netlink family id (resolved once per socket).

export function newServiceRequest(family: number, s: VirtualService): Buffer {
  return req(CMD.NEW_SERVICE, serviceAttrs(s), family);
}

export function setServiceRequest(family: number, s: VirtualService): Buffer {
  return req(CMD.SET_SERVICE, serviceAttrs(s), family);
}

export function delServiceRequest(family: number, s: VirtualServiceKey): Buffer {
  return req(CMD.DEL_SERVICE, new AttrWriter().nested(CMD_ATTR.SERVICE, (w) => serviceKeyAttrs(w, s)), family);
}

export function dumpServicesRequest(family: number): Buffer {
  return req(CMD.GET_SERVICE, undefined, family, NLM_F_REQUEST | NLM_F_DUMP);
}

function destAttrs(w: AttrWriter, s: VirtualServiceKey, d: RealServer, full: boolean): void {
  w.nested(CMD_ATTR.SERVICE, (x) => serviceKeyAttrs(x, s));
  w.nested(CMD_ATTR.DEST, (x) => {
    x.binary(DEST.ADDR, inetAddr(d.address)).be16(DEST.PORT, d.port).u16(DEST.ADDR_FAMILY, famAF(d.address.includes(':') ? 6 : 4));
    if (full) x.u32(DEST.FWD_METHOD, d.forward).u32(DEST.WEIGHT, d.weight).u32(DEST.U_THRESH, d.upperThreshold).u32(DEST.L_THRESH, d.lowerThreshold);
  });
}

export function newDestRequest(family: number, s: VirtualServiceKey, d: RealServer): Buffer {
  const w = new AttrWriter();
  destAttrs(w, s, d, true);
  return req(CMD.NEW_DEST, w, family);
}

export function setDestRequest(family: number, s: VirtualServiceKey, d: RealServer): Buffer {
  const w = new AttrWriter();
  destAttrs(w, s, d, true);
  return req(CMD.SET_DEST, w, family);
}

export function delDestRequest(family: number, s: VirtualServiceKey, d: Pick<RealServer, 'address' | 'port'>): Buffer {
  const w = new AttrWriter();
  destAttrs(w, s, { ...d, weight: 0, forward: 0, upperThreshold: 0, lowerThreshold: 0 }, false);
  return req(CMD.DEL_DEST, w, family);
}

export function dumpDestsRequest(family: number, s: VirtualServiceKey): Buffer {
  return req(CMD.GET_DEST, new AttrWriter().nested(CMD_ATTR.SERVICE, (w) => serviceKeyAttrs(w, s)), family, NLM_F_REQUEST | NLM_F_DUMP);
}

// ---- replies (and requests, decoded back) ------------------------------------------------------------------------

function decodeStats(a: Attrs | undefined, wide: boolean): Stats | undefined {
  if (!a) return undefined;
  const n = (t: number) => (wide ? a.u64(t) : a.u32(t) !== undefined ? BigInt(a.u32(t)!) : undefined) ?? 0n;
  return { conns: n(STATS.CONNS), inPackets: n(STATS.INPKTS), outPackets: n(STATS.OUTPKTS), inBytes: a.u64(STATS.INBYTES) ?? 0n, outBytes: a.u64(STATS.OUTBYTES) ?? 0n };
}

function decodeAddr(b: Buffer | undefined, af: number | undefined): string | undefined {
  if (!b) return undefined;
  return bytesToIp(af === AF_INET6 ? b.subarray(0, 16) : b.subarray(0, 4));
}

/** A service attribute nest (from a dump reply or a request). */
export function decodeService(msg: Buffer): VirtualServiceState | undefined {
  const g = parseGenl(msg);
  const a = g.attrs.nested(CMD_ATTR.SERVICE);
  if (!a) return undefined;
  const af = a.u16(SVC.AF);
  const protocol = protocolName(a.u16(SVC.PROTOCOL) ?? -1);
  const address = decodeAddr(a.get(SVC.ADDR), af);
  if (!protocol || !address || a.has(SVC.FWMARK) && !a.has(SVC.ADDR)) return undefined; // fwmark services are not ours
  const flags = a.get(SVC.FLAGS);
  return {
    family: af === AF_INET6 ? 6 : 4, protocol, address, port: a.be16(SVC.PORT) ?? 0,
    scheduler: a.string(SVC.SCHED_NAME) ?? '', flags: flags ? flags.readUInt32LE(0) : 0,
    timeout: a.u32(SVC.TIMEOUT) ?? 0, netmask: a.u32(SVC.NETMASK) ?? 0,
    stats: a.has(SVC.STATS64) ? decodeStats(a.nested(SVC.STATS64), true) : decodeStats(a.nested(SVC.STATS), false),
  };
}

/** A destination attribute nest (from a dump reply or a request). */
export function decodeDest(msg: Buffer): RealServerState | undefined {
  const g = parseGenl(msg);
  const a = g.attrs.nested(CMD_ATTR.DEST);
  if (!a) return undefined;
  const address = decodeAddr(a.get(DEST.ADDR), a.u16(DEST.ADDR_FAMILY));
  if (!address) return undefined;
  return {
    address, port: a.be16(DEST.PORT) ?? 0, weight: a.u32(DEST.WEIGHT) ?? 0, forward: (a.u32(DEST.FWD_METHOD) ?? 0) & 0x7,
    upperThreshold: a.u32(DEST.U_THRESH) ?? 0, lowerThreshold: a.u32(DEST.L_THRESH) ?? 0,
    activeConns: a.u32(DEST.ACTIVE_CONNS) ?? 0, inactiveConns: a.u32(DEST.INACT_CONNS) ?? 0, persistConns: a.u32(DEST.PERSIST_CONNS) ?? 0,
    stats: a.has(DEST.STATS64) ? decodeStats(a.nested(DEST.STATS64), true) : decodeStats(a.nested(DEST.STATS), false),
  };
}

/** The command of an IPVS message (for tests and error messages). */
export function commandOf(msg: Buffer): number {
  return parseGenl(msg).cmd;
}

export function serviceKeyString(s: VirtualServiceKey): string {
  return `${s.protocol} ${s.family === 6 ? `[${s.address}]` : s.address}:${s.port}`;
}
