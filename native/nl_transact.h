// Pipelined request/acknowledge exchanges on a plain netlink socket (generic netlink for IPVS, rtnetlink for the
// Service-address interface, later ctnetlink). The messages are built and parsed in TypeScript
// (src/netlink/*: mirror-image encode/decode functions); this side only numbers, sends, receives and matches.
//
// Each request is a complete netlink message; its nlmsg_seq and nlmsg_pid are overwritten here. Requests go out in
// pages (many messages per sendmsg: the kernel processes an skb's messages one after another, acking each that
// asked with NLM_F_ACK); every reply is matched to its request by sequence number and checked for our port id. A
// request is finished by its ack (NLMSG_ERROR, error 0 or -errno, with the extended-ack message if any) or, for a
// dump, by NLMSG_DONE. Replies carrying data (dumps, echoes) are kept with their request. Dumps go one at a time
// (a socket runs a single dump; a second one meanwhile is refused with EBUSY), each alone in its page.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "netlink_socket.h"

namespace svcplane {

struct NlResult {
  int err = 0;                            // 0, or a positive errno
  std::string kernelMessage;              // NLMSGERR_ATTR_MSG, when the kernel gave one
  std::vector<std::vector<uint8_t>> replies;  // data messages (not the final ack/DONE)
};

struct NlTransactStats {
  uint32_t sends = 0;
  uint64_t bytes = 0;
  int64_t kernelMicros = 0;  // time in sendmsg + recv
};

// Throws SysError only for failures of the exchange itself (send/recv errors, lost replies); a request the
// kernel refuses is reported in its NlResult.
//
// ackLastOnly: the caller promises that no request answers with data (IPVS and rtnetlink new/set/delete
// commands). Only the last request of each page then asks for an ack: the kernel still answers every refused
// request with an NLMSG_ERROR naming its sequence number (netlink_rcv_skb acks on error whatever the flags), and
// it processes a page's messages in order, so the last ack means every earlier request is done. That saves the
// kernel an ack per request and the receive loop most of its work (half of the exchange time at 10k requests).
std::vector<NlResult> NlTransact(NetlinkSocket& sock, std::vector<std::vector<uint8_t>>& requests, NlTransactStats& stats,
                                 bool ackLastOnly = false);

}  // namespace svcplane
