// Abstract unix sockets (Linux): their names live in a space of their own per network namespace and vanish with
// the last descriptor of the socket, i.e. with the process holding it, however it ends (SIGKILL included). That
// makes a listening one a lock on a network namespace that needs no file (works with a read-only root) and can
// never be left stale; the kernel also tells a client who holds it (SO_PEERCRED). svcplane's writer lock
// (src/dataplane/writerLock.ts) is one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "fd.h"

namespace svcplane {

// A listening stream socket bound to the abstract name in the namespace at netnsPath ("": the caller's). Throws
// SysError (EADDRINUSE when another socket holds the name).
Fd ListenAbstract(const std::string& name, const std::string& netnsPath);

struct AbstractPeer {
  enum class State { Absent, Busy, Connected } state = State::Absent;  // Busy: the holder's accept queue is full
  Fd fd;            // Connected only
  pid_t pid = 0;    // from SO_PEERCRED: the process that listens, as this process's PID namespace sees it (0: it cannot)
  int32_t uid = -1;
};

// Connects to the holder of the abstract name in the namespace at netnsPath. Throws SysError.
AbstractPeer ConnectAbstract(const std::string& name, const std::string& netnsPath);

}  // namespace svcplane
