// Generic netlink framing (include/uapi/linux/genetlink.h): genlmsghdr { u8 cmd; u8 version; u16 reserved } after
// the netlink header, then attributes; and the controller's family lookup (CTRL_CMD_GETFAMILY).
import { type AttributeDecoder, throwIfFailed } from './attribute';
import { NLM_F_ACK, NLM_F_REQUEST, NLMSG_HDRLEN, type NetlinkWriter, attributesOf, oneMessage, parseHeader } from './message';

export const GENL_HDRLEN = 4;
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;

/** Starts a generic netlink message of family `family` (its id): netlink header, then genlmsghdr. */
export function beginGenl(w: NetlinkWriter, family: number, flags: number, cmd: number, version: number): NetlinkWriter {
  return w.begin(family, flags).header([cmd, version, 0, 0]);
}

export interface GenlMessage {
  family: number;
  flags: number;
  cmd: number;
  version: number;
  /** A decoder for the message's attributes (one pass). */
  attrs: AttributeDecoder;
}

export function parseGenl(msg: Buffer): GenlMessage {
  const h = parseHeader(msg);
  return { family: h.type, flags: h.flags, cmd: msg.readUInt8(NLMSG_HDRLEN), version: msg.readUInt8(NLMSG_HDRLEN + 1), attrs: attributesOf(msg, GENL_HDRLEN) };
}

/** The request resolving a generic netlink family's id by name. */
export function getFamilyRequest(name: string): Buffer {
  return oneMessage((w) => beginGenl(w, GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, CTRL_CMD_GETFAMILY, 1).string(CTRL_ATTR_FAMILY_NAME, name).end());
}

export function familyIdOf(reply: Buffer): number | undefined {
  const d = parseGenl(reply).attrs;
  let id: number | undefined;
  while (d.next()) if (d.type() === CTRL_ATTR_FAMILY_ID) id = d.u16();
  throwIfFailed(d, 'generic netlink family');
  return id;
}
