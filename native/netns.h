// Making something inside another network namespace: a netlink or unix socket, a /proc/sys/net file. Each belongs
// to the namespace of the thread that created (or opened) it, whatever thread uses it later; so a thread enters
// the target namespace only to make the thing, and comes back at once, before anything else can run on it.
#pragma once

#include <cerrno>
#include <string>
#include <utility>

#include "fd.h"

namespace svcplane {

// Opens a namespace file (/run/netns/NAME, /proc/PID/ns/net). Throws SysError.
Fd OpenNetns(const std::string& path);

// " in PATH", or "" for the caller's own namespace (""): for messages.
inline std::string InNetnsSuffix(const std::string& path) { return path.empty() ? "" : " in " + path; }

// A new, empty network namespace held by the returned descriptor alone: it goes when the descriptor does, i.e. with
// this process however it ends (a benchmark's throwaway node: nothing to clean up after a kill). The calling thread
// makes it and returns to its own namespace at once. Throws SysError (EPERM without CAP_SYS_ADMIN).
Fd NewNetns();

// Ends the process: a thread that could not return to its own network namespace would open every later socket and
// /proc/sys file of whatever runs on it (the JS thread, or a libuv worker shared by all async work) in the other
// one, i.e. program or read the wrong node without any error. A crash with the reason is the safe outcome.
[[noreturn]] void AbortStuckInNetns(const std::string& where, int err);

// While it lives, this thread is in the namespace `targetFd` refers to (`name` says which, for messages); its
// destructor returns the thread to the namespace it was in, or aborts the process (AbortStuckInNetns). The
// constructor throws SysError if the thread cannot get there, and the thread is then where it was.
class InNetns {
 public:
  InNetns(int targetFd, const std::string& name);
  ~InNetns();
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;

 private:
  Fd self_;
  std::string name_;
};

// Runs make() inside the namespace `targetFd` refers to (or here, without any switch, when targetFd < 0) and
// returns what it made and the errno it left (read before the way back, which may change errno).
template <typename Make>
auto RunInNetns(int targetFd, const std::string& name, Make make) -> std::pair<decltype(make()), int> {
  if (targetFd < 0) {
    auto made = make();
    int err = errno;
    return {made, err};
  }
  InNetns in(targetFd, name);
  auto made = make();
  int err = errno;
  return {made, err};
}

// The same, given the namespace's file (/run/netns/NAME, /proc/PID/ns/net; "": the caller's own).
template <typename Make>
auto RunInNetns(const std::string& netnsPath, Make make) -> std::pair<decltype(make()), int> {
  if (netnsPath.empty()) return RunInNetns(-1, netnsPath, make);
  Fd target = OpenNetns(netnsPath);
  return RunInNetns(target.get(), netnsPath, make);
}

}  // namespace svcplane
