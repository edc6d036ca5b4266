// One request on a leased netlink socket and every reply to it, up to the kernel's last word: NLMSG_DONE for a
// dump, the ack (or error) for a request sent with NLM_F_ACK. The replies are always read to that end, even when
// the kernel flags the dump as interrupted (NLM_F_DUMP_INTR: the ruleset changed between two parts), so the socket
// stays in step with the kernel; replies to any earlier request are skipped by sequence number. An exchange that
// cannot reach its end (timeout, lost replies) reopens the socket (ExchangeInProgress) before throwing.
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <string>

#include "netlink_socket.h"

namespace svcplane {

struct ExchangeOutcome {
  bool interrupted = false;  // some reply carried NLM_F_DUMP_INTR: what was read may mix two states
};

// build(buf, seq) writes the request (with sequence number seq) into buf (MNL_SOCKET_BUFFER_SIZE bytes, zeroed)
// and returns it. onReply sees each data message of the reply. An error the kernel answers with is thrown as
// SysError(errno, "<what>: <text>[ - kernel says: <extack>]").
ExchangeOutcome Exchange(NetlinkSocket& sock, const std::string& what, const std::function<nlmsghdr*(char*, uint32_t)>& build,
                         const std::function<void(const nlmsghdr*)>& onReply);

}  // namespace svcplane
