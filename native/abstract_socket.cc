#include "abstract_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "napi_util.h"
#include "netlink_socket.h"

namespace svcplane {
namespace {

// A unix socket made in the namespace at netnsPath: the abstract names it binds or reaches are that namespace's.
int UnixSocketIn(const std::string& netnsPath) {
  auto make = [] { return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); };
  if (netnsPath.empty()) {
    int fd = make();
    if (fd < 0) throw NetlinkError(errno, "unix socket: " + ErrnoText(errno));
    return fd;
  }
  auto [fd, err] = CreateInNetns(netnsPath, make);
  if (fd < 0) throw NetlinkError(err, "unix socket in " + netnsPath + ": " + ErrnoText(err));
  return fd;
}

socklen_t AbstractAddress(const std::string& name, sockaddr_un& addr) {
  if (name.empty() || name.size() + 1 > sizeof(addr.sun_path)) throw NetlinkError(EINVAL, "abstract socket name too long or empty: " + name);
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: the abstract namespace
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

struct Args {
  std::string name, netns;
};

Args ArgsOf(const Napi::CallbackInfo& info, const char* usage) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), usage);
  Args a;
  a.name = info[0].As<Napi::String>();
  if (info.Length() > 1 && info[1].IsString()) a.netns = info[1].As<Napi::String>();
  return a;
}

Napi::Value ListenAbstract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a = ArgsOf(info, "listenAbstract(name: string, netns?: string)");
  try {
    UniqueFd fd(UnixSocketIn(a.netns));
    sockaddr_un addr;
    socklen_t len = AbstractAddress(a.name, addr);
    if (bind(fd.fd, reinterpret_cast<sockaddr*>(&addr), len) < 0)
      throw NetlinkError(errno, "bind @" + a.name + ": " + ErrnoText(errno));
    if (listen(fd.fd, 64) < 0) throw NetlinkError(errno, "listen @" + a.name + ": " + ErrnoText(errno));
    int out = fd.fd;
    fd.fd = -1;  // handed to JS
    return Napi::Number::New(env, out);
  } catch (const NetlinkError& e) {
    throw MakeError(env, e.what(), e.errnum);
  }
}

Napi::Value ConnectAbstract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a = ArgsOf(info, "connectAbstract(name: string, netns?: string)");
  try {
    UniqueFd fd(UnixSocketIn(a.netns));
    sockaddr_un addr;
    socklen_t len = AbstractAddress(a.name, addr);
    Napi::Object out = Napi::Object::New(env);
    // A unix stream connect completes at once (non-blocking: EAGAIN when the holder's accept queue is full).
    if (connect(fd.fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
      if (errno == ECONNREFUSED || errno == ENOENT) return env.Null();
      if (errno != EAGAIN) throw NetlinkError(errno, "connect @" + a.name + ": " + ErrnoText(errno));
      out.Set("fd", Napi::Number::New(env, -1));
      out.Set("pid", Napi::Number::New(env, 0));
      out.Set("uid", Napi::Number::New(env, -1));
      return out;
    }
    ucred cred{};
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd.fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) cred = ucred{0, static_cast<uid_t>(-1), static_cast<gid_t>(-1)};
    out.Set("fd", Napi::Number::New(env, fd.fd));
    out.Set("pid", Napi::Number::New(env, cred.pid));
    out.Set("uid", Napi::Number::New(env, static_cast<int32_t>(cred.uid)));
    fd.fd = -1;  // handed to JS
    return out;
  } catch (const NetlinkError& e) {
    throw MakeError(env, e.what(), e.errnum);
  }
}

}  // namespace

void InitAbstractSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("listenAbstract", Napi::Function::New(env, ListenAbstract, "listenAbstract"));
  exports.Set("connectAbstract", Napi::Function::New(env, ConnectAbstract, "connectAbstract"));
}

}  // namespace svcplane
