#include "sysctl.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>

#include "netlink_socket.h"

namespace svcplane {
namespace {

// "net/ipv4/vs/conntrack" or "net.ipv4.vs.conntrack" -> "/proc/sys/net/ipv4/vs/conntrack". Only net/ sysctls
// are per namespace; anything else (or a path escaping /proc/sys) is refused.
std::string PathOf(const std::string& name) {
  std::string rel = name;
  if (rel.find('/') == std::string::npos)
    for (char& c : rel)
      if (c == '.') c = '/';
  if (rel.compare(0, 4, "net/") != 0 || rel.find("..") != std::string::npos)
    throw NetlinkError(EINVAL, "sysctl " + name + ": only net.* sysctls can be set per network namespace");
  return "/proc/sys/" + rel;
}

// Opens `path` inside the namespace at netnsPath (or here when empty) and returns the fd.
int OpenIn(const std::string& path, int flags, const std::string& netnsPath) {
  if (netnsPath.empty()) {
    int fd = open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) throw NetlinkError(errno, "open " + path + ": " + ErrnoText(errno));
    return fd;
  }
  auto [fd, openErr] = CreateInNetns(netnsPath, [&] { return open(path.c_str(), flags | O_CLOEXEC); });
  if (fd < 0) throw NetlinkError(openErr, "open " + path + " in " + netnsPath + ": " + ErrnoText(openErr));
  return fd;
}

}  // namespace

std::string ReadNetSysctl(const std::string& name, const std::string& netnsPath) {
  std::string path = PathOf(name);
  UniqueFd fd(OpenIn(path, O_RDONLY, netnsPath));
  char buf[256];
  ssize_t n = read(fd.fd, buf, sizeof(buf));
  if (n < 0) throw NetlinkError(errno, "read " + path + ": " + ErrnoText(errno));
  std::string v(buf, static_cast<size_t>(n));
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

void WriteNetSysctl(const std::string& name, const std::string& value, const std::string& netnsPath) {
  std::string path = PathOf(name);
  UniqueFd fd(OpenIn(path, O_WRONLY, netnsPath));
  std::string v = value + "\n";
  ssize_t n = write(fd.fd, v.data(), v.size());
  if (n < 0) throw NetlinkError(errno, "write " + value + " to " + path + ": " + ErrnoText(errno));
}

}  // namespace svcplane
