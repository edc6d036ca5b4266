// The one parser of the kernel's final word on a request, shared by the nftables batch (nft_commit), single
// exchanges (nl_exchange) and the pipelined transceiver (nl_transact): an acknowledgement (NLMSG_ERROR) gives the
// errno, the extended-ack message and the offset of the attribute the kernel blamed (NLMSGERR_ATTR_OFFS, counted
// from the start of the request's header); a dump's end (NLMSG_DONE) gives the errno the dump failed with, if any.
// Every length is checked: a short or malformed reply yields what could be read, never a read past the buffer.
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

// nlh must be an NLMSG_DONE message, checked as above. Its payload is an int, negative when the dump failed
// part-way: returns that errno (positive), or 0 (none, or no payload).
int ParseDone(const nlmsghdr* nlh);

}  // namespace svcplane
