#include "netlink_socket.h"

#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace svcplane {

std::string ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : ("E" + std::to_string(err));
}

std::string ErrnoText(int err) { return strerror(err); }

namespace {

void SetIntOpt(int fd, int level, int opt, int value) {
  setsockopt(fd, level, opt, &value, sizeof(value));  // best effort: older kernels lack some options
}

}  // namespace

NetlinkSocket::NetlinkSocket(int bus, const std::string& netnsPath) {
  seq_ = static_cast<uint32_t>(time(nullptr));
  mnl_socket* s = nullptr;
  if (netnsPath.empty()) {
    s = mnl_socket_open(bus);
    if (!s) throw NetlinkError(errno, "netlink socket: " + ErrnoText(errno));
  } else {
    auto [made, openErr] = CreateInNetns(
        netnsPath, [bus] { return mnl_socket_open(bus); }, [](mnl_socket* m) { if (m) mnl_socket_close(m); });
    s = made;
    if (!s) throw NetlinkError(openErr, "netlink socket in " + netnsPath + ": " + ErrnoText(openErr));
  }
  sock_.reset(s);
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) throw NetlinkError(errno, "netlink bind: " + ErrnoText(errno));
  portid_ = mnl_socket_get_portid(s);
  int fd = mnl_socket_get_fd(s);
  // Extended acks name the attribute at fault; capped acks keep error replies small (no echo of the
  // request), so the receive buffer holds many of them when a big batch fails everywhere.
  SetIntOpt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
  SetIntOpt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
  // Dumps of 30k-chain tables come back faster with a large receive buffer; FORCE needs CAP_NET_ADMIN.
  int rcv = 16 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
  EnsureSendBuffer(1 << 20);
}

uint32_t NetlinkSocket::NextSeq(uint32_t count) {
  uint32_t first = seq_;
  seq_ += count;
  return first;
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
    throw NetlinkError(errno, "setting the netlink send buffer to " + std::to_string(want) + " bytes: " + ErrnoText(errno));
  sndbuf_ = want;
}

void NetlinkSocket::Close() { sock_.reset(); }

}  // namespace svcplane
