#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "errors.h"

namespace svcplane {

Fd OpenNetns(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw SysError(errno, "open netns " + path + ": " + ErrnoText(errno));
  return fd;
}

void AbortStuckInNetns(const std::string& where, int err) {
  std::string msg = "svcplane: fatal: a thread could not return from network namespace " + where +
                    " to its own (setns: " + ErrnoText(err) + ", " + ErrnoName(err) +
                    "); aborting rather than let it open sockets and files in the wrong namespace\n";
  // write(2), not stdio: nothing buffered may be lost to abort().
  ssize_t ignored = write(STDERR_FILENO, msg.data(), msg.size());
  (void)ignored;
  abort();
}

// thread-self, not self: setns moves only the calling thread, and the process's main thread may be elsewhere.
InNetns::InNetns(int targetFd, const std::string& name) : self_(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)), name_(name) {
  if (!self_.valid()) throw SysError(errno, "open own netns: " + ErrnoText(errno));
  if (setns(targetFd, CLONE_NEWNET) < 0) throw SysError(errno, "setns " + name + ": " + ErrnoText(errno));
}

InNetns::~InNetns() {
  if (setns(self_.get(), CLONE_NEWNET) < 0) AbortStuckInNetns(name_, errno);
}

Fd NewNetns() {
  Fd self(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!self.valid()) throw SysError(errno, "open own netns: " + ErrnoText(errno));
  if (unshare(CLONE_NEWNET) < 0) throw SysError(errno, "unshare(CLONE_NEWNET): " + ErrnoText(errno));
  Fd made(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  int openErr = errno;
  // Back first, whatever the open did: this thread runs JS (or a libuv worker's jobs) next.
  if (setns(self.get(), CLONE_NEWNET) < 0) AbortStuckInNetns("a new namespace", errno);
  if (!made.valid()) throw SysError(openErr, "open the new netns: " + ErrnoText(openErr));
  return made;
}

}  // namespace svcplane
