#include "netlink_socket.h"

#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cerrno>
#include <ctime>

#include "netns.h"

namespace svcplane {

namespace {

void SetIntOpt(int fd, int level, int opt, int value) {
  setsockopt(fd, level, opt, &value, sizeof(value));  // best effort: older kernels lack some options
}

}  // namespace

NetlinkSocket::NetlinkSocket(int bus, const std::string& netnsPath, int replyTimeoutMs)
    : bus_(bus), replyTimeoutMs_(replyTimeoutMs > 0 ? replyTimeoutMs : kDefaultReplyTimeoutMs), netnsName_(netnsPath) {
  seq_ = static_cast<uint32_t>(time(nullptr));
  if (!netnsPath.empty()) netns_ = OpenNetns(netnsPath);
  sock_.reset(Open());
}

mnl_socket* NetlinkSocket::Open() {
  auto [s, openErr] = RunInNetns(netns_.get(), netnsName_, [this] { return mnl_socket_open(bus_); });
  if (!s) throw SysError(openErr, "netlink socket" + InNetnsSuffix(netnsName_) + ": " + ErrnoText(openErr));
  std::unique_ptr<mnl_socket, MnlSocketDeleter> owned(s);
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) throw SysError(errno, "netlink bind: " + ErrnoText(errno));
  int fd = mnl_socket_get_fd(s);
  // Extended acks name the attribute at fault; capped acks keep error replies small (no echo of the
  // request), so the receive buffer holds many of them when a big batch fails everywhere.
  SetIntOpt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
  SetIntOpt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
  // Dumps of 30k-chain tables come back faster with a large receive buffer; FORCE needs CAP_NET_ADMIN.
  int rcv = 16 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
  int snd = 1 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(snd)) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd));
  sndbuf_ = static_cast<size_t>(snd);
  portid_ = mnl_socket_get_portid(s);
  return owned.release();
}

NetlinkSocket::Lease::Lease(NetlinkSocket& s) : s_(s), lock_(s.mu_) {
  if (s_.closed_.load() || !s_.sock_) {
    std::string why = s_.lostReason_.empty() ? "netlink socket is closed" : s_.lostReason_;
    Release();
    throw SysError(EBADF, why);
  }
}

void NetlinkSocket::Lease::Release() {
  if (!lock_.owns_lock()) return;
  lock_.unlock();
  s_.CloseIfAsked();
}

void NetlinkSocket::CloseIfAsked() {
  if (!closed_.load()) return;
  // Whoever finds the socket free after Close() closes it: Close() itself, or the last lease to end.
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (lock.owns_lock()) sock_.reset();
}

void NetlinkSocket::Close() {
  closed_ = true;
  CloseIfAsked();
}

void NetlinkSocket::EnsureSendBuffer(size_t bytes) {
  if (bytes <= sndbuf_) return;
  // The kernel doubles the value and refuses a sendmsg larger than sk_sndbuf - 32 (netlink_sendmsg).
  size_t want = bytes + 65536;
  if (want > (1u << 30)) want = 1u << 30;
  int v = static_cast<int>(want);
  int fd = mnl_socket_get_fd(sock_.get());
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) < 0)
    throw SysError(errno, "setting the netlink send buffer to " + std::to_string(want) + " bytes: " + ErrnoText(errno));
  sndbuf_ = want;
}

size_t NetlinkSocket::Receive(const std::string& what) {
  const int fd = this->fd();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(replyTimeoutMs_);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    int pr = poll(&p, 1, left > 0 ? static_cast<int>(left) : 0);
    if (pr < 0) {
      if (errno == EINTR) continue;
      throw SysError(errno, what + ": waiting for the kernel's reply: " + ErrnoText(errno));
    }
    if (pr == 0)
      throw SysError(ETIMEDOUT, what + ": no reply from the kernel within " + std::to_string(replyTimeoutMs_) + " ms");
    iovec iov{RecvBuffer(), kRecvBufferBytes};
    sockaddr_nl from{};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      // ENOBUFS: the receive queue overflowed and the kernel dropped replies; the exchange cannot be completed.
      throw SysError(errno, what + ": receive: " + ErrnoText(errno));
    }
    if (msg.msg_flags & MSG_TRUNC)
      throw SysError(EMSGSIZE, what + ": a reply larger than the " + std::to_string(kRecvBufferBytes) + "-byte receive buffer");
    if (from.nl_pid != 0) continue;  // not from the kernel
    return static_cast<size_t>(n);
  }
}

void NetlinkSocket::Reopen() noexcept {
  sock_.reset();
  sndbuf_ = 0;
  try {
    sock_.reset(Open());
  } catch (const std::exception& e) {
    lostReason_ = std::string("netlink socket lost: reopening it after an unfinished exchange failed: ") + e.what();
  }
}

}  // namespace svcplane
