// One parser for netlink acknowledgements (NLMSG_ERROR), shared by the nftables batch and the pipelined
// transceiver: the errno, the extended-ack message and the offset of the attribute the kernel blamed
// (NLMSGERR_ATTR_OFFS, counted from the start of the request's header). Every length is checked: a short or
// malformed reply yields what could be read, never a read past the buffer.
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <string>

namespace svcplane {

struct NlAck {
  int errnum = 0;               // positive errno; 0 for a plain ack
  std::string message;          // NLMSGERR_ATTR_MSG, when the kernel gave one
  int64_t badAttrOffset = -1;   // NLMSGERR_ATTR_OFFS, when the kernel named an attribute
};

// nlh must be an NLMSG_ERROR message whose nlmsg_len the caller checked against the buffer (NLMSG_OK).
NlAck ParseAck(const nlmsghdr* nlh);

}  // namespace svcplane
