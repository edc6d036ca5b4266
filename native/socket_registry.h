// The netlink sockets held by live JS objects (NftSocket, NetlinkTransceiver), so the environment's cleanup hook
// can close those still open when node exits or a worker thread's environment ends (CloseAll). A JS object holds
// its socket through a RegisteredSocket; worker threads may keep the socket itself alive longer (shared_ptr).
#pragma once

#include <memory>

#include "netlink_socket.h"

namespace svcplane {

class RegisteredSocket {
 public:
  RegisteredSocket();   // registered from here (empty until Set)...
  ~RegisteredSocket();  // ...to here
  RegisteredSocket(const RegisteredSocket&) = delete;
  RegisteredSocket& operator=(const RegisteredSocket&) = delete;

  void Set(std::shared_ptr<NetlinkSocket> sock) { sock_ = std::move(sock); }
  const std::shared_ptr<NetlinkSocket>& get() const { return sock_; }
  // The socket if it is open, else null.
  std::shared_ptr<NetlinkSocket> Live() const { return sock_ && sock_->IsOpen() ? sock_ : nullptr; }
  void Close() {
    if (sock_) sock_->Close();
  }

  // Closes every registered socket (NetlinkSocket::Close: an exchange in progress ends first). JS thread.
  static void CloseAll();

 private:
  std::shared_ptr<NetlinkSocket> sock_;
};

}  // namespace svcplane
