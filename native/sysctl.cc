#include "sysctl.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "fd.h"
#include "netns.h"

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
    throw SysError(EINVAL, "sysctl " + name + ": only net.* sysctls can be set per network namespace");
  return "/proc/sys/" + rel;
}

// Opens `path` inside the namespace at netnsPath (or here when empty).
Fd OpenIn(const std::string& path, int flags, const std::string& netnsPath) {
  auto [fd, openErr] = RunInNetns(netnsPath, [&] { return open(path.c_str(), flags | O_CLOEXEC); });
  if (fd < 0) throw SysError(openErr, "open " + path + InNetnsSuffix(netnsPath) + ": " + ErrnoText(openErr));
  return Fd(fd);
}

}  // namespace

std::string ReadNetSysctl(const std::string& name, const std::string& netnsPath) {
  std::string path = PathOf(name);
  Fd fd = OpenIn(path, O_RDONLY, netnsPath);
  char buf[256];
  ssize_t n = read(fd.get(), buf, sizeof(buf));
  if (n < 0) throw SysError(errno, "read " + path + ": " + ErrnoText(errno));
  std::string v(buf, static_cast<size_t>(n));
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

void WriteNetSysctl(const std::string& name, const std::string& value, const std::string& netnsPath) {
  std::string path = PathOf(name);
  Fd fd = OpenIn(path, O_WRONLY, netnsPath);
  std::string v = value + "\n";
  ssize_t n = write(fd.get(), v.data(), v.size());
  if (n < 0) throw SysError(errno, "write " + value + " to " + path + ": " + ErrnoText(errno));
}

}  // namespace svcplane
