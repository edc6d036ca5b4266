#include "nl_ack.h"

#include <cerrno>
#include <climits>
#include <cstring>

namespace svcplane {

NlAck ParseAck(const nlmsghdr* nlh) {
  NlAck out;
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
    out.errnum = EBADMSG;
    return out;
  }
  const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(nlh));
  // -INT_MIN does not exist: such an error field is malformed.
  out.errnum = err->error == INT_MIN ? EBADMSG : -err->error;
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return out;
  // struct nlmsgerr, then the echoed request's payload unless the ack is capped (NETLINK_CAP_ACK), then the TLVs.
  size_t off = sizeof(nlmsgerr);
  if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
    if (err->msg.nlmsg_len < sizeof(nlmsghdr)) return out;
    off += err->msg.nlmsg_len - sizeof(nlmsghdr);
  }
  const char* base = static_cast<const char*>(NLMSG_DATA(nlh));
  const size_t total = nlh->nlmsg_len - NLMSG_HDRLEN;
  off = NLMSG_ALIGN(off);
  while (off + sizeof(nlattr) <= total) {
    const auto* a = reinterpret_cast<const nlattr*>(base + off);
    if (a->nla_len < sizeof(nlattr) || off + a->nla_len > total) break;
    const size_t payload = a->nla_len - NLA_HDRLEN;
    const char* p = base + off + NLA_HDRLEN;
    switch (a->nla_type & NLA_TYPE_MASK) {
      case NLMSGERR_ATTR_MSG:
        out.message.assign(p, strnlen(p, payload));
        break;
      case NLMSGERR_ATTR_OFFS:
        if (payload >= sizeof(uint32_t)) {
          uint32_t v;
          memcpy(&v, p, sizeof(v));
          out.badAttrOffset = v;
        }
        break;
      default:
        break;
    }
    off += NLA_ALIGN(a->nla_len);
  }
  return out;
}

int ParseDone(const nlmsghdr* nlh) {
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(int))) return 0;
  int v;
  memcpy(&v, NLMSG_DATA(nlh), sizeof(v));
  if (v == INT_MIN) return EBADMSG;  // as in ParseAck
  return v < 0 ? -v : 0;
}

}  // namespace svcplane
