// IPVS over generic netlink (include/uapi/linux/ip_vs.h), pure: each command's encoder has a decoder mirroring it
// (moby/ipvs netlink_linux.go's structure), so tests round-trip every message and dumps decode with the same
// definitions.
import { bytesToIp } from '../../model/ip';
import { parseGenl } from '../../netlink/genl';
import { type Attrs, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from '../../netlink/message';
import { type NetlinkWriter, oneAttrs, oneMessage } from '../../netlink/writer';

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
    lastKey = oneAttrs((x) => x.u16(SVC.AF, famAF(s.family)).u16(SVC.PROTOCOL, PROTO[s.protocol]).ip(SVC.ADDR, s.address, 16).be16(SVC.PORT, s.port));
    lastKeyOf = s;
  }
  w.raw(lastKey);
}

function begin(w: NetlinkWriter, family: number, cmd: number, flags = ACKED): NetlinkWriter {
  return w.begin(family, flags).genl(cmd, IPVS_GENL_VERSION);
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
