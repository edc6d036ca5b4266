// Generic netlink framing (include/uapi/linux/genetlink.h): genlmsghdr { u8 cmd; u8 version; u16 reserved } after
// the netlink header, then attributes; and the controller's family lookup (CTRL_CMD_GETFAMILY).
import { AttrWriter, Attrs, NLM_F_ACK, NLM_F_REQUEST, NLMSG_HDRLEN, nlmsg, parseHeader } from './message';

export const GENL_HDRLEN = 4;
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;

export function genlmsg(family: number, cmd: number, version: number, flags: number, attrs?: AttrWriter): Buffer {
  const body = attrs ? attrs.bytes() : Buffer.alloc(0);
  const payload = Buffer.alloc(GENL_HDRLEN + body.length);
  payload.writeUInt8(cmd, 0);
  payload.writeUInt8(version, 1);
  body.copy(payload, GENL_HDRLEN);
  return nlmsg(family, flags, payload);
}

export interface GenlMessage {
  family: number;
  flags: number;
  cmd: number;
  version: number;
  attrs: Attrs;
}

export function parseGenl(msg: Buffer): GenlMessage {
  const h = parseHeader(msg);
  const end = Math.min(h.len, msg.length);
  return {
    family: h.type, flags: h.flags, cmd: msg.readUInt8(NLMSG_HDRLEN), version: msg.readUInt8(NLMSG_HDRLEN + 1),
    attrs: new Attrs(msg, NLMSG_HDRLEN + GENL_HDRLEN, end),
  };
}

/** The request resolving a generic netlink family's id by name. */
export function getFamilyRequest(name: string): Buffer {
  return genlmsg(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, NLM_F_REQUEST | NLM_F_ACK, new AttrWriter().string(CTRL_ATTR_FAMILY_NAME, name));
}

export function familyIdOf(reply: Buffer): number | undefined {
  return parseGenl(reply).attrs.u16(CTRL_ATTR_FAMILY_ID);
}
