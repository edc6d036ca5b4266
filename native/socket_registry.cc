#include "socket_registry.h"

#include <mutex>
#include <set>

namespace svcplane {
namespace {

std::mutex gOpenMu;
std::set<RegisteredSocket*> gOpen;

}  // namespace

RegisteredSocket::RegisteredSocket() {
  std::lock_guard<std::mutex> lock(gOpenMu);
  gOpen.insert(this);
}

RegisteredSocket::~RegisteredSocket() {
  std::lock_guard<std::mutex> lock(gOpenMu);
  gOpen.erase(this);
}

void RegisteredSocket::CloseAll() {
  std::lock_guard<std::mutex> lock(gOpenMu);
  for (RegisteredSocket* s : gOpen) s->Close();
}

}  // namespace svcplane
