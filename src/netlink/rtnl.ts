// rtnetlink messages (include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h), pure: the Service-address interface
// (a `dummy` link svcplane creates, `svcplane0`) and its addresses. Each encoder has its decoder.
import { bytesToIp, ipToBytes } from '../model/ip';
import { AttrWriter, Attrs, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_HDRLEN, nlmsg, parseHeader } from './message';

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
