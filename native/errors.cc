#include "errors.h"

#include <cstring>

namespace svcplane {

std::string ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : ("E" + std::to_string(err));
}

std::string ErrnoText(int err) { return strerror(err); }

}  // namespace svcplane
