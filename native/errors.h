// The addon's one C++ error type: an errno and the operation (and object) that failed, in words. The N-API layer
// turns it into a JS Error with `code` ("ENOENT") and numeric `errno` (napi_util.h MakeError).
#pragma once

#include <stdexcept>
#include <string>

namespace svcplane {

class SysError : public std::runtime_error {
 public:
  SysError(int err, const std::string& message) : std::runtime_error(message), errnum(err) {}
  int errnum;
};

std::string ErrnoName(int err);  // "ENOENT"
std::string ErrnoText(int err);  // "No such file or directory"

}  // namespace svcplane
