#include "nl_transact.h"

#include "nl_ack.h"

#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace svcplane {

namespace {

// A page: enough messages to amortise the syscalls, small enough that the replies of one page (acks are 36
// bytes with NETLINK_CAP_ACK; dump replies are drained as they come) never overrun the receive buffer.
constexpr size_t kPageBytes = 256 * 1024;
constexpr size_t kPageMessages = 2048;

std::string ToHex(unsigned v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%x", v);
  return buf;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<NlResult> NlTransact(NetlinkSocket& sock, std::vector<std::vector<uint8_t>>& requests, NlTransactStats& stats,
                                 bool ackLastOnly) {
  NetlinkSocket::Lease lease(sock);
  std::vector<NlResult> results(requests.size());
  if (requests.empty()) return results;
  const uint32_t first = sock.NextSeq(static_cast<uint32_t>(requests.size()));
  const uint32_t portid = sock.portid();
  for (size_t i = 0; i < requests.size(); i++) {
    auto& r = requests[i];
    if (r.size() < sizeof(nlmsghdr)) throw SysError(EINVAL, "request " + std::to_string(i) + " is shorter than a netlink header");
    auto* nlh = reinterpret_cast<nlmsghdr*>(r.data());
    if (nlh->nlmsg_len != r.size()) throw SysError(EINVAL, "request " + std::to_string(i) + ": nlmsg_len does not match its size");
    nlh->nlmsg_seq = first + static_cast<uint32_t>(i);
    nlh->nlmsg_pid = 0;
  }
  sock.EnsureSendBuffer(kPageBytes);
  std::vector<uint8_t> page;
  size_t next = 0;
  while (next < requests.size()) {
    // Build a page.
    size_t start = next;
    page.clear();
    // A netlink socket runs one dump at a time (a second dump request meanwhile gets EBUSY): a dump request goes
    // alone in its page and is drained to NLMSG_DONE before anything else is sent; other requests are batched.
    auto isDump = [&](size_t i) {
      return (reinterpret_cast<const nlmsghdr*>(requests[i].data())->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
    };
    std::vector<size_t> offsets;
    while (next < requests.size()) {
      if (next > start && (isDump(next) || isDump(start))) break;
      if (next > start && (page.size() + requests[next].size() > kPageBytes || next - start >= kPageMessages)) break;
      offsets.push_back(page.size());
      page.insert(page.end(), requests[next].begin(), requests[next].end());
      next++;
    }
    // With ackLastOnly, every request of the page but the last goes without NLM_F_ACK (see nl_transact.h).
    const bool quiet = ackLastOnly && !isDump(start);
    if (quiet) {
      for (size_t k = 0; k + 1 < offsets.size(); k++) reinterpret_cast<nlmsghdr*>(page.data() + offsets[k])->nlmsg_flags &= ~NLM_F_ACK;
      reinterpret_cast<nlmsghdr*>(page.data() + offsets.back())->nlmsg_flags |= NLM_F_ACK;
    }
    int64_t t0 = NowMicros();
    // Until every request of the page is answered, the socket is out of step with the kernel: leaving early (a
    // missing reply, lost replies) reopens it, so the next exchange never reads this one's leftovers.
    ExchangeInProgress exchange(sock);
    ssize_t sent;
    do sent = send(sock.fd(), page.data(), page.size(), 0);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      int err = errno;
      exchange.Done();  // nothing went out
      throw SysError(err, "netlink send: " + ErrnoText(err));
    }
    stats.sends++;
    stats.bytes += page.size();
    // Drain until every request of the page is finished (quiet: until the last one's ack).
    size_t pending = quiet ? 1 : next - start;
    std::vector<char> finished(next - start);
    while (pending > 0) {
      int left;
      try {
        // ENOBUFS: the kernel dropped replies; which requests took effect is unknown, so the caller must re-read.
        left = static_cast<int>(sock.Receive("netlink exchange"));
      } catch (const SysError& e) {
        if (e.errnum != ETIMEDOUT) throw;
        // A request the kernel answers with nothing (e.g. one without NLM_F_ACK that has no reply): name it.
        size_t k = quiet ? next - 1 - start : 0;
        while (k + 1 < finished.size() && finished[k]) k++;
        const auto* req = reinterpret_cast<const nlmsghdr*>(requests[start + k].data());
        throw SysError(ETIMEDOUT, "netlink request #" + std::to_string(start + k) + " (message type " + std::to_string(req->nlmsg_type) +
                                      ", flags 0x" + ToHex(req->nlmsg_flags) + "): no reply from the kernel within " +
                                      std::to_string(sock.replyTimeoutMs()) + " ms");
      }
      for (const nlmsghdr* nlh = reinterpret_cast<const nlmsghdr*>(sock.RecvBuffer()); mnl_nlmsg_ok(nlh, left);
           nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_pid != portid && nlh->nlmsg_pid != 0) continue;  // not a reply to us
        uint32_t idx = nlh->nlmsg_seq - first;
        if (nlh->nlmsg_seq < first || idx < start || idx >= next) continue;  // stale (an earlier, failed exchange)
        NlResult& res = results[idx];
        if (nlh->nlmsg_type == NLMSG_ERROR) {
          NlAck ack = ParseAck(nlh);
          res.err = ack.errnum;
          res.kernelMessage = std::move(ack.message);
          if (!quiet || idx == next - 1) pending--;
          finished[idx - start] = 1;
        } else if (nlh->nlmsg_type == NLMSG_DONE) {
          // A dump's end: failed part-way when its payload says so.
          if (int e = ParseDone(nlh)) res.err = e;
          pending--;
          finished[idx - start] = 1;
        } else {
          const uint8_t* p = reinterpret_cast<const uint8_t*>(nlh);
          res.replies.emplace_back(p, p + nlh->nlmsg_len);
          // A reply without NLM_F_MULTI to a request that did not ask for an ack is final.
          const auto* req = reinterpret_cast<const nlmsghdr*>(requests[idx].data());
          if (!(nlh->nlmsg_flags & NLM_F_MULTI) && !(req->nlmsg_flags & NLM_F_ACK)) {
            pending--;
            finished[idx - start] = 1;
          }
        }
      }
    }
    exchange.Done();
    stats.kernelMicros += NowMicros() - t0;
  }
  return results;
}

}  // namespace svcplane
