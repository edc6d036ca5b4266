// A netlink socket (libmnl), optionally opened inside another network namespace, shared by the JS object that
// owns it and the worker threads running its exchanges.
//
// A netlink socket belongs to the namespace it was created in, whatever thread later uses it; so the namespace is
// entered only for socket() and left at once, and every later send/recv (on worker threads) talks to that
// namespace's kernel.
//
// Exchanges hold a Lease (one at a time). An exchange that ends without the kernel's final reply (a timeout, a
// receive error, an abandoned dump) leaves replies queued that the next exchange would read as its own; it then
// calls Reopen(), which replaces the kernel socket by a fresh one in the same namespace, so nothing stale survives.
#pragma once

#include <libmnl/libmnl.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "errors.h"
#include "fd.h"

namespace svcplane {

struct MnlSocketDeleter {
  void operator()(mnl_socket* s) const {
    if (s) mnl_socket_close(s);
  }
};

class NetlinkSocket {
 public:
  // Enough for any reply the kernel has to give: nf_tables, rtnetlink, generic netlink and ctnetlink queue their
  // answer (or the next dump part) before the sendmsg/recvmsg that asked returns. Waiting longer means no answer.
  static constexpr int kDefaultReplyTimeoutMs = 10000;

  // netnsPath: "" for the caller's namespace, else e.g. "/run/netns/node" or "/proc/PID/ns/net".
  NetlinkSocket(int bus, const std::string& netnsPath, int replyTimeoutMs = kDefaultReplyTimeoutMs);
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // Exclusive use of the socket for one exchange. Throws SysError(EBADF) when it is closed (or was lost).
  // If Close() was called meanwhile, the last lease to end closes the kernel socket.
  class Lease {
   public:
    explicit Lease(NetlinkSocket& s);
    ~Lease() { Release(); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

   private:
    void Release();
    NetlinkSocket& s_;
    std::unique_lock<std::mutex> lock_;
  };

  // Any thread.
  uint32_t NextSeq(uint32_t count) { return seq_.fetch_add(count); }  // reserves `count` numbers, returns the first
  bool IsOpen() const { return !closed_.load(); }
  uint32_t portid() const { return portid_.load(); }
  int replyTimeoutMs() const { return replyTimeoutMs_; }
  // Closes the kernel socket now if no exchange holds it, else when the one in progress ends; later exchanges fail
  // with EBADF. Never waits: it runs on the JS thread.
  void Close();

  // Under a Lease only.
  mnl_socket* get() const { return sock_.get(); }
  int fd() const { return mnl_socket_get_fd(sock_.get()); }
  // Grows the send buffer (SO_SNDBUFFORCE) so one sendmsg of `bytes` fits: a batch must reach the
  // kernel as a single skb (nfnetlink only commits a BEGIN..END batch it receives whole).
  void EnsureSendBuffer(size_t bytes);
  // A receive buffer kept with the socket: allocated once, never zeroed. A fresh 1 MiB vector per exchange was
  // zeroed and page-faulted in every time, which under the IPVS test guest's emulated CPU made an empty nft dump
  // cost ~7 ms (0.1 ms natively).
  uint8_t* RecvBuffer() {
    if (!rx_) rx_.reset(new uint8_t[kRecvBufferBytes]);
    return rx_.get();
  }
  static constexpr size_t kRecvBufferBytes = 1 << 20;
  // One recv into RecvBuffer(), waiting at most the reply timeout for something to read. Returns the bytes read.
  // Throws SysError: ETIMEDOUT ("<what>: no reply from the kernel within N ms"), or the receive's errno
  // (ENOBUFS: the kernel dropped replies), or EMSGSIZE for a reply larger than the buffer.
  size_t Receive(const std::string& what);
  // Replaces the kernel socket by a fresh one in the same namespace (a new port id): replies still queued for the
  // old one go with it. If that fails the socket is lost and later exchanges fail with the reason.
  void Reopen() noexcept;

 private:
  mnl_socket* Open();  // a bound, configured socket in this socket's namespace
  void CloseIfAsked();

  const int bus_;
  const int replyTimeoutMs_;
  std::string netnsName_;      // for messages
  Fd netns_;                   // the namespace, held open for Reopen(); invalid: the caller's own
  std::unique_ptr<mnl_socket, MnlSocketDeleter> sock_;
  std::atomic<uint32_t> portid_{0};
  std::atomic<uint32_t> seq_;
  std::atomic<bool> closed_{false};
  std::string lostReason_;  // why Reopen() failed, under mu_
  size_t sndbuf_ = 0;
  std::mutex mu_;
  std::unique_ptr<uint8_t[]> rx_;
};

// Marks an exchange in progress on a leased socket: unless Done() is called (the kernel's final reply was read, or
// nothing was sent), leaving the scope reopens the socket, so the replies the exchange left unread die with it.
class ExchangeInProgress {
 public:
  explicit ExchangeInProgress(NetlinkSocket& s) : s_(s) {}
  ~ExchangeInProgress() {
    if (!done_) s_.Reopen();
  }
  void Done() { done_ = true; }
  ExchangeInProgress(const ExchangeInProgress&) = delete;
  ExchangeInProgress& operator=(const ExchangeInProgress&) = delete;

 private:
  NetlinkSocket& s_;
  bool done_ = false;
};

}  // namespace svcplane
