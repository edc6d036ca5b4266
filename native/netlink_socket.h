// A NETLINK_NETFILTER socket (libmnl), optionally opened inside another network namespace.
//
// A netlink socket belongs to the namespace it was created in, whatever thread later uses it; so the
// namespace is entered only for socket() and left at once, and every later send/recv (on worker threads)
// talks to that namespace's nf_tables.
#pragma once

#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace svcplane {

// An error carrying the errno and the operation that failed, turned into a JS Error with code/errno.
class NetlinkError : public std::runtime_error {
 public:
  NetlinkError(int err, const std::string& message) : std::runtime_error(message), errnum(err) {}
  int errnum;
};

std::string ErrnoName(int err);  // "ENOENT"
std::string ErrnoText(int err);  // "No such file or directory"

// RAII fd, so every early return closes it.
struct UniqueFd {
  int fd = -1;
  explicit UniqueFd(int f) : fd(f) {}
  ~UniqueFd() {
    if (fd >= 0) close(fd);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
};

// Runs create() inside the network namespace at netnsPath and returns this thread to its own namespace before
// anything else can run on it: a socket or a /proc/sys file belongs to the namespace it was made in, whichever
// thread uses it later. Returns what create() made and the errno it left; if the way back fails, discard(made)
// and throw.
template <typename Create, typename Discard>
auto CreateInNetns(const std::string& netnsPath, Create create, Discard discard) -> std::pair<decltype(create()), int> {
  UniqueFd target(open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.fd < 0) throw NetlinkError(errno, "open netns " + netnsPath + ": " + ErrnoText(errno));
  UniqueFd self(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (self.fd < 0) throw NetlinkError(errno, "open own netns: " + ErrnoText(errno));
  if (setns(target.fd, CLONE_NEWNET) < 0) throw NetlinkError(errno, "setns " + netnsPath + ": " + ErrnoText(errno));
  auto made = create();
  int createErr = errno;
  if (setns(self.fd, CLONE_NEWNET) < 0) {
    int err = errno;
    discard(made);
    throw NetlinkError(err, "setns back from " + netnsPath + ": " + ErrnoText(err));
  }
  return {made, createErr};
}

struct MnlSocketDeleter {
  void operator()(mnl_socket* s) const {
    if (s) mnl_socket_close(s);
  }
};

class NetlinkSocket {
 public:
  // netnsPath: "" for the caller's namespace, else e.g. "/run/netns/node" or "/proc/PID/ns/net".
  NetlinkSocket(int bus, const std::string& netnsPath);
  mnl_socket* get() const { return sock_.get(); }
  uint32_t portid() const { return portid_; }
  int fd() const { return mnl_socket_get_fd(sock_.get()); }
  uint32_t NextSeq(uint32_t count);  // reserves `count` sequence numbers, returns the first
  // Grows the send buffer (SO_SNDBUFFORCE) so one sendmsg of `bytes` fits: a batch must reach the
  // kernel as a single skb (nfnetlink only commits a BEGIN..END batch it receives whole).
  void EnsureSendBuffer(size_t bytes);
  void Close();
  std::mutex& mutex() { return mu_; }
  // A receive buffer kept with the socket (callers hold mutex()): allocated once, never zeroed. A fresh 1 MiB
  // vector per exchange was zeroed and page-faulted in every time, which under the IPVS test guest's emulated CPU
  // made an empty nft dump cost ~7 ms (0.1 ms natively).
  uint8_t* RecvBuffer() {
    if (!rx_) rx_.reset(new uint8_t[kRecvBufferBytes]);
    return rx_.get();
  }
  static constexpr size_t kRecvBufferBytes = 1 << 20;

 private:
  std::unique_ptr<mnl_socket, MnlSocketDeleter> sock_;
  uint32_t portid_ = 0;
  uint32_t seq_;
  size_t sndbuf_ = 0;
  std::mutex mu_;
  std::unique_ptr<uint8_t[]> rx_;
};

}  // namespace svcplane
