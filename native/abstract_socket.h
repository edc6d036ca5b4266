// Abstract unix sockets (Linux): their names live in a space of their own per network namespace and vanish with
// the last descriptor of the socket, i.e. with the process holding it, however it ends (SIGKILL included). That
// makes a listening one a lock on a network namespace that needs no file (works with a read-only root) and can
// never be left stale; the kernel also tells a client who holds it (SO_PEERCRED). svcplane's writer lock
// (src/dataplane/writerLock.ts) is one.
#pragma once

#include <napi.h>

#include <string>

namespace svcplane {

// listenAbstract(name, netns?) -> fd: a listening stream socket bound to the abstract name in the namespace at
// netns (default: the caller's). Throws with code EADDRINUSE when another socket holds the name.
// connectAbstract(name, netns?) -> { fd, pid, uid } | null: connected to the holder (pid/uid from SO_PEERCRED:
// the process that listens, as this process's PID namespace sees it, 0 when it cannot); fd -1 when the holder's
// queue is full; null when nobody holds the name.
void InitAbstractSockets(Napi::Env env, Napi::Object exports);

}  // namespace svcplane
