#include "nl_exchange.h"

#include <sys/socket.h>

#include <cerrno>

#include "nl_ack.h"

namespace svcplane {

ExchangeOutcome Exchange(NetlinkSocket& sock, const std::string& what, const std::function<nlmsghdr*(char*, uint32_t)>& build,
                         const std::function<void(const nlmsghdr*)>& onReply) {
  char req[MNL_SOCKET_BUFFER_SIZE] = {};  // zeroed: libnftnl leaves some padding bytes unwritten
  const uint32_t seq = sock.NextSeq(1);
  nlmsghdr* nlh = build(req, seq);
  ExchangeInProgress exchange(sock);
  ssize_t sent;
  do sent = mnl_socket_sendto(sock.get(), nlh, nlh->nlmsg_len);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    int err = errno;
    exchange.Done();  // nothing went out, nothing will come back
    throw SysError(err, what + ": send: " + ErrnoText(err));
  }
  const uint32_t portid = sock.portid();
  ExchangeOutcome out;
  for (;;) {
    // Large reads let the kernel fill bigger dump skbs (it sizes them to our last recvmsg buffer).
    int left = static_cast<int>(sock.Receive(what));
    for (const auto* m = reinterpret_cast<const nlmsghdr*>(sock.RecvBuffer()); NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
      // Replies to an earlier request on this socket are not ours (cannot happen after a Reopen; kept as defence).
      if (m->nlmsg_seq != seq || (m->nlmsg_pid != portid && m->nlmsg_pid != 0)) continue;
      if (m->nlmsg_flags & NLM_F_DUMP_INTR) out.interrupted = true;
      switch (m->nlmsg_type) {
        case NLMSG_NOOP:
          continue;
        case NLMSG_OVERRUN:
          throw SysError(EOVERFLOW, what + ": the kernel reports lost data (NLMSG_OVERRUN)");
        case NLMSG_ERROR: {
          exchange.Done();
          NlAck ack = ParseAck(m);
          if (ack.errnum == 0) return out;
          throw SysError(ack.errnum, what + ": " + ErrnoText(ack.errnum) + (ack.message.empty() ? "" : " - kernel says: " + ack.message));
        }
        case NLMSG_DONE: {
          exchange.Done();
          // A dump's end: failed part-way when its payload says so.
          int err = ParseDone(m);
          if (err > 0) throw SysError(err, what + ": " + ErrnoText(err));
          return out;
        }
        default:
          onReply(m);
      }
    }
    if (left > 0) throw SysError(EBADMSG, what + ": a truncated reply (" + std::to_string(left) + " stray bytes)");
  }
}

}  // namespace svcplane
