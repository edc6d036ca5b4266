// rtnetlink messages (include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h), pure: the Service-address interface
// (a `dummy` link svcplane creates, `svcplane0`) and its addresses. Each encoder has its decoder.
import { bytesToIp, ipToBytes } from '../model/ip';
import { AttrWriter, Attrs, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_HDRLEN, nlmsg, parseHeader } from './message';
import { type NetlinkWriter, oneMessage } from './writer';

export const RTM = { NEWLINK: 16, DELLINK: 17, GETLINK: 18, NEWADDR: 20, DELADDR: 21, GETADDR: 22 } as const;
const IFLA = { ADDRESS: 1, IFNAME: 3, MTU: 4, LINK: 5, LINKINFO: 18 } as const;
const IFLA_INFO = { KIND: 1 } as const;
const IFA = { ADDRESS: 1, LOCAL: 2, LABEL: 3, FLAGS: 8 } as const;
export const IFF_UP = 0x1;
const AF_UNSPEC = 0;
const AF_INET = 2;
const AF_INET6 = 10;
/** IFA_F_NODAD: an IPv6 Service address is usable at once (no duplicate address detection wait). */
const IFA_F_NODAD = 0x02;
const RT_SCOPE_UNIVERSE = 0;

const IFINFOMSG_LEN = 16; // { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change }
const IFADDRMSG_LEN = 8; // { u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index }

function ifinfomsg(index: number, flags: number, change: number): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(AF_UNSPEC, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

/** Creates a dummy link, administratively up. */
export function newDummyLinkRequest(name: string): Buffer {
  const attrs = new AttrWriter().string(IFLA.IFNAME, name).nested(IFLA.LINKINFO, (w) => w.string(IFLA_INFO.KIND, 'dummy'));
  return nlmsg(RTM.NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, Buffer.concat([ifinfomsg(0, IFF_UP, IFF_UP), attrs.bytes()]));
}

export function setLinkUpRequest(index: number): Buffer {
  return nlmsg(RTM.NEWLINK, NLM_F_REQUEST | NLM_F_ACK, ifinfomsg(index, IFF_UP, IFF_UP));
}

export function delLinkRequest(index: number): Buffer {
  return nlmsg(RTM.DELLINK, NLM_F_REQUEST | NLM_F_ACK, ifinfomsg(index, 0, 0));
}

/** Looks a link up by name (one reply, or ENODEV). */
export function getLinkRequest(name: string): Buffer {
  return nlmsg(RTM.GETLINK, NLM_F_REQUEST | NLM_F_ACK, Buffer.concat([ifinfomsg(0, 0, 0), new AttrWriter().string(IFLA.IFNAME, name).bytes()]));
}

export interface LinkInfo {
  index: number;
  name: string;
  flags: number;
  kind?: string;
}

export function decodeLink(msg: Buffer): LinkInfo | undefined {
  const h = parseHeader(msg);
  if (h.type !== RTM.NEWLINK) return undefined;
  const a = new Attrs(msg, NLMSG_HDRLEN + IFINFOMSG_LEN, Math.min(h.len, msg.length));
  return {
    index: msg.readInt32LE(NLMSG_HDRLEN + 4), flags: msg.readUInt32LE(NLMSG_HDRLEN + 8), name: a.string(IFLA.IFNAME) ?? '',
    kind: a.nested(IFLA.LINKINFO)?.string(IFLA_INFO.KIND),
  };
}

function ifaddrmsg(family: number, prefixlen: number, flags: number, scope: number, index: number): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeUInt8(prefixlen, 1);
  b.writeUInt8(flags, 2);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

function addrMessage(type: number, flags: number, index: number, ip: string): Buffer {
  const v6 = ip.includes(':');
  const bytes = ipToBytes(ip);
  // A host route for the address only (/32, /128): the dummy link holds Service addresses, not a subnet.
  const attrs = new AttrWriter().binary(IFA.LOCAL, bytes).binary(IFA.ADDRESS, bytes);
  if (v6) attrs.u32(IFA.FLAGS, IFA_F_NODAD);
  return nlmsg(type, flags, Buffer.concat([ifaddrmsg(v6 ? AF_INET6 : AF_INET, v6 ? 128 : 32, v6 ? IFA_F_NODAD : 0, RT_SCOPE_UNIVERSE, index), attrs.bytes()]));
}

export function newAddrRequest(index: number, ip: string): Buffer {
  return addrMessage(RTM.NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, index, ip);
}

export function delAddrRequest(index: number, ip: string): Buffer {
  return addrMessage(RTM.DELADDR, NLM_F_REQUEST | NLM_F_ACK, index, ip);
}

/** Every address of every link (filter by index on the replies: kernels before 4.20 ignore the dump filter). */
export function dumpAddrsRequest(): Buffer {
  return nlmsg(RTM.GETADDR, NLM_F_REQUEST | NLM_F_DUMP, ifaddrmsg(AF_UNSPEC, 0, 0, 0, 0));
}

export interface AddrInfo {
  index: number;
  address: string;
  prefixlen: number;
  scope: number;
}

export function decodeAddr(msg: Buffer): AddrInfo | undefined {
  const h = parseHeader(msg);
  if (h.type !== RTM.NEWADDR) return undefined;
  const family = msg.readUInt8(NLMSG_HDRLEN);
  const a = new Attrs(msg, NLMSG_HDRLEN + IFADDRMSG_LEN, Math.min(h.len, msg.length));
  const raw = a.get(IFA.LOCAL) ?? a.get(IFA.ADDRESS);
  if (!raw || (family !== AF_INET && family !== AF_INET6)) return undefined;
  return { index: msg.readUInt32LE(NLMSG_HDRLEN + 4), address: bytesToIp(raw), prefixlen: msg.readUInt8(NLMSG_HDRLEN + 1), scope: msg.readUInt8(NLMSG_HDRLEN + 3) };
}

// ---- writers into a NetlinkWriter (a sync's many bindings in one buffer) -------------------------------------

function writeAddr(w: NetlinkWriter, type: number, flags: number, index: number, ip: string): void {
  const v6 = ip.includes(':');
  w.begin(type, flags).header([v6 ? AF_INET6 : AF_INET, v6 ? 128 : 32, v6 ? IFA_F_NODAD : 0, RT_SCOPE_UNIVERSE, index & 0xff, (index >>> 8) & 0xff, (index >>> 16) & 0xff, index >>> 24]);
  w.ip(IFA.LOCAL, ip).ip(IFA.ADDRESS, ip);
  if (v6) w.u32(IFA.FLAGS, IFA_F_NODAD);
  w.end();
}

export const writeNewAddr = (w: NetlinkWriter, index: number, ip: string) => writeAddr(w, RTM.NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, index, ip);
export const writeDelAddr = (w: NetlinkWriter, index: number, ip: string) => writeAddr(w, RTM.DELADDR, NLM_F_REQUEST | NLM_F_ACK, index, ip);

// ---- local routes: a Service address bound as `local <ip> dev svcplane0 table local` ------------------------
// What an address does for delivery (the kernel makes exactly such a route for every address it is given), at a
// fraction of the cost: adding an address walks the link's whole address list (__inet_insert_ifa), so binding N
// addresses on one link is quadratic (10k: 5.3 s under the test guest's TCG, against 0.78 s for 10k routes).

export const RTM_ROUTE = { NEWROUTE: 24, DELROUTE: 25, GETROUTE: 26 } as const;
const RTA = { DST: 1, OIF: 4, TABLE: 15 } as const;
export const RT_TABLE_LOCAL = 255;
const RT_SCOPE_HOST = 254;
const RTN_LOCAL = 2;
/**
 * The routing protocol svcplane's routes carry (rtm_protocol; /etc/iproute2/rt_protos names 0-4 for the kernel and
 * 8-192 for routing daemons; 88 is unassigned): `ip route show table local proto 88` lists them, and a restart
 * tells its own routes from anyone else's.
 */
export const RTPROT_SVCPLANE = 88;
const RTMSG_LEN = 12; // { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags }

function writeRoute(w: NetlinkWriter, type: number, flags: number, index: number, ip: string): void {
  const v6 = ip.includes(':');
  w.begin(type, flags).header([v6 ? AF_INET6 : AF_INET, v6 ? 128 : 32, 0, 0, RT_TABLE_LOCAL, RTPROT_SVCPLANE, RT_SCOPE_HOST, RTN_LOCAL, 0, 0, 0, 0]);
  w.ip(RTA.DST, ip).u32(RTA.OIF, index).u32(RTA.TABLE, RT_TABLE_LOCAL).end();
}

export const writeNewLocalRoute = (w: NetlinkWriter, index: number, ip: string) => writeRoute(w, RTM_ROUTE.NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, index, ip);
export const writeDelLocalRoute = (w: NetlinkWriter, index: number, ip: string) => writeRoute(w, RTM_ROUTE.DELROUTE, NLM_F_REQUEST | NLM_F_ACK, index, ip);
export const newLocalRouteRequest = (index: number, ip: string) => oneMessage((w) => writeNewLocalRoute(w, index, ip));
export const delLocalRouteRequest = (index: number, ip: string) => oneMessage((w) => writeDelLocalRoute(w, index, ip));

/** Every route of every family (replies filtered by decodeRoute's caller: older kernels ignore dump filters). */
export function dumpRoutesRequest(): Buffer {
  return oneMessage((w) => w.begin(RTM_ROUTE.GETROUTE, NLM_F_REQUEST | NLM_F_DUMP).header(new Array(RTMSG_LEN).fill(0)).end());
}

export interface RouteInfo {
  family: 4 | 6;
  dst: string;
  dstLen: number;
  table: number;
  protocol: number;
  type: number;
  oif?: number;
}

export function decodeRoute(msg: Buffer): RouteInfo | undefined {
  const h = parseHeader(msg);
  if (h.type !== RTM_ROUTE.NEWROUTE) return undefined;
  const family = msg.readUInt8(NLMSG_HDRLEN);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const a = new Attrs(msg, NLMSG_HDRLEN + RTMSG_LEN, Math.min(h.len, msg.length));
  const dst = a.get(RTA.DST);
  if (!dst) return undefined;
  return {
    family: family === AF_INET ? 4 : 6, dst: bytesToIp(dst), dstLen: msg.readUInt8(NLMSG_HDRLEN + 1),
    table: a.u32(RTA.TABLE) ?? msg.readUInt8(NLMSG_HDRLEN + 4), protocol: msg.readUInt8(NLMSG_HDRLEN + 5), type: msg.readUInt8(NLMSG_HDRLEN + 7),
    oif: a.u32(RTA.OIF),
  };
}

/** Whether a route is one of svcplane's Service-address routes on link `index`. */
export function isServiceRoute(r: RouteInfo, index: number): boolean {
  return r.table === RT_TABLE_LOCAL && r.protocol === RTPROT_SVCPLANE && r.type === RTN_LOCAL && r.oif === index && r.dstLen === (r.family === 4 ? 32 : 128);
}
