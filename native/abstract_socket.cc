#include "abstract_socket.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "errors.h"
#include "netns.h"

namespace svcplane {
namespace {

// A unix socket made in the namespace at netnsPath: the abstract names it binds or reaches are that namespace's.
Fd UnixSocketIn(const std::string& netnsPath) {
  auto [fd, err] = RunInNetns(netnsPath, [] { return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); });
  if (fd < 0) throw SysError(err, "unix socket" + InNetnsSuffix(netnsPath) + ": " + ErrnoText(err));
  return Fd(fd);
}

socklen_t AbstractAddress(const std::string& name, sockaddr_un& addr) {
  if (name.empty() || name.size() + 1 > sizeof(addr.sun_path)) throw SysError(EINVAL, "abstract socket name too long or empty: " + name);
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: the abstract namespace
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

}  // namespace

Fd ListenAbstract(const std::string& name, const std::string& netnsPath) {
  Fd fd = UnixSocketIn(netnsPath);
  sockaddr_un addr;
  socklen_t len = AbstractAddress(name, addr);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) < 0)
    throw SysError(errno, "bind @" + name + ": " + ErrnoText(errno));
  if (listen(fd.get(), 64) < 0) throw SysError(errno, "listen @" + name + ": " + ErrnoText(errno));
  return fd;
}

AbstractPeer ConnectAbstract(const std::string& name, const std::string& netnsPath) {
  AbstractPeer out;
  Fd fd = UnixSocketIn(netnsPath);
  sockaddr_un addr;
  socklen_t len = AbstractAddress(name, addr);
  // A unix stream connect completes at once (non-blocking: EAGAIN when the holder's accept queue is full).
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    if (errno == ECONNREFUSED || errno == ENOENT) return out;
    if (errno != EAGAIN) throw SysError(errno, "connect @" + name + ": " + ErrnoText(errno));
    out.state = AbstractPeer::State::Busy;
    return out;
  }
  ucred cred{};
  socklen_t clen = sizeof(cred);
  if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) cred = ucred{0, static_cast<uid_t>(-1), static_cast<gid_t>(-1)};
  out.state = AbstractPeer::State::Connected;
  out.fd = std::move(fd);
  out.pid = cred.pid;
  out.uid = static_cast<int32_t>(cred.uid);
  return out;
}

}  // namespace svcplane
