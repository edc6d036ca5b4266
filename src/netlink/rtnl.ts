// rtnetlink messages (include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h), pure: the Service-address interface
// (a `dummy` link svcplane creates, `svcplane0`) and its addresses. Each encoder has its decoder.
import { throwIfFailed } from './attribute';
import { NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_HDRLEN, type NetlinkWriter, attributesOf, oneMessage, parseHeader } from './message';

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

/** A u32 as four bytes of a fixed header, host order. */
const u32bytes = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

function beginLink(w: NetlinkWriter, type: number, flags: number, index: number, ifflags: number, change: number): NetlinkWriter {
  return w.begin(type, flags).header([AF_UNSPEC, 0, 0, 0, ...u32bytes(index), ...u32bytes(ifflags), ...u32bytes(change)]);
}

/** Creates a dummy link, administratively up; `index` asks for that ifindex (0: the kernel's next; svcplane bench's IPVS floor asks). */
export function newDummyLinkRequest(name: string, index = 0): Buffer {
  return oneMessage((w) => beginLink(w, RTM.NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, index, IFF_UP, IFF_UP)
    .string(IFLA.IFNAME, name).nested(IFLA.LINKINFO, (e) => e.string(IFLA_INFO.KIND, 'dummy')).end());
}

export function setLinkUpRequest(index: number): Buffer {
  return oneMessage((w) => beginLink(w, RTM.NEWLINK, NLM_F_REQUEST | NLM_F_ACK, index, IFF_UP, IFF_UP).end());
}

export function delLinkRequest(index: number): Buffer {
  return oneMessage((w) => beginLink(w, RTM.DELLINK, NLM_F_REQUEST | NLM_F_ACK, index, 0, 0).end());
}

/** Looks a link up by name (one reply, or ENODEV). */
export function getLinkRequest(name: string): Buffer {
  return oneMessage((w) => beginLink(w, RTM.GETLINK, NLM_F_REQUEST | NLM_F_ACK, 0, 0, 0).string(IFLA.IFNAME, name).end());
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
  const d = attributesOf(msg, IFINFOMSG_LEN);
  let name = '';
  let kind: string | undefined;
  while (d.next()) {
    if (d.type() === IFLA.IFNAME) name = d.string();
    else if (d.type() === IFLA.LINKINFO) d.nested((l) => {
      while (l.next()) if (l.type() === IFLA_INFO.KIND) kind = l.string();
    });
  }
  throwIfFailed(d, 'rtnetlink link');
  return { index: msg.readInt32LE(NLMSG_HDRLEN + 4), flags: msg.readUInt32LE(NLMSG_HDRLEN + 8), name, kind };
}

// Addresses are written into a NetlinkWriter (a sync's many bindings in one buffer); the *Request forms return one
// message as its own Buffer.
function writeAddr(w: NetlinkWriter, type: number, flags: number, index: number, ip: string): void {
  const v6 = ip.includes(':');
  // A host route for the address only (/32, /128): the dummy link holds Service addresses, not a subnet.
  w.begin(type, flags).header([v6 ? AF_INET6 : AF_INET, v6 ? 128 : 32, v6 ? IFA_F_NODAD : 0, RT_SCOPE_UNIVERSE, ...u32bytes(index)]);
  w.ip(IFA.LOCAL, ip).ip(IFA.ADDRESS, ip);
  if (v6) w.u32(IFA.FLAGS, IFA_F_NODAD);
  w.end();
}

export const writeNewAddr = (w: NetlinkWriter, index: number, ip: string) => writeAddr(w, RTM.NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, index, ip);
export const writeDelAddr = (w: NetlinkWriter, index: number, ip: string) => writeAddr(w, RTM.DELADDR, NLM_F_REQUEST | NLM_F_ACK, index, ip);
export const newAddrRequest = (index: number, ip: string) => oneMessage((w) => writeNewAddr(w, index, ip));
export const delAddrRequest = (index: number, ip: string) => oneMessage((w) => writeDelAddr(w, index, ip));

/** Every address of every link (filter by index on the replies: kernels before 4.20 ignore the dump filter). */
export function dumpAddrsRequest(): Buffer {
  return oneMessage((w) => w.begin(RTM.GETADDR, NLM_F_REQUEST | NLM_F_DUMP).header(new Array(IFADDRMSG_LEN).fill(0)).end());
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
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const d = attributesOf(msg, IFADDRMSG_LEN);
  let local: string | undefined;
  let address: string | undefined;
  while (d.next()) {
    if (d.type() === IFA.LOCAL) local = d.ip();
    else if (d.type() === IFA.ADDRESS) address = d.ip();
  }
  throwIfFailed(d, 'rtnetlink address');
  const ip = local ?? address;
  if (ip === undefined) return undefined;
  return { index: msg.readUInt32LE(NLMSG_HDRLEN + 4), address: ip, prefixlen: msg.readUInt8(NLMSG_HDRLEN + 1), scope: msg.readUInt8(NLMSG_HDRLEN + 3) };
}

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
  const d = attributesOf(msg, RTMSG_LEN);
  let dst: string | undefined;
  let table: number | undefined;
  let oif: number | undefined;
  while (d.next()) {
    switch (d.type()) {
      case RTA.DST: dst = d.ip(); break;
      case RTA.TABLE: table = d.u32(); break;
      case RTA.OIF: oif = d.u32(); break;
    }
  }
  throwIfFailed(d, 'rtnetlink route');
  if (dst === undefined) return undefined;
  return {
    family: family === AF_INET ? 4 : 6, dst, dstLen: msg.readUInt8(NLMSG_HDRLEN + 1),
    table: table ?? msg.readUInt8(NLMSG_HDRLEN + 4), protocol: msg.readUInt8(NLMSG_HDRLEN + 5), type: msg.readUInt8(NLMSG_HDRLEN + 7),
    oif,
  };
}

/** Whether a route is one of svcplane's Service-address routes on link `index`. */
export function isServiceRoute(r: RouteInfo, index: number): boolean {
  return r.table === RT_TABLE_LOCAL && r.protocol === RTPROT_SVCPLANE && r.type === RTN_LOCAL && r.oif === index && r.dstLen === (r.family === 4 ? 32 : 128);
}
