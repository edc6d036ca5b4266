// Network sysctls (/proc/sys/net/...) of a network namespace. Which namespace a /proc/sys/net file acts on is
// decided when it is opened (the opening thread's namespace), so the file is opened inside the target namespace
// and read or written after returning (netns.h).
#pragma once

#include <string>

namespace svcplane {

// Reads the value (trailing newline removed). Throws SysError (errno) on failure.
std::string ReadNetSysctl(const std::string& name, const std::string& netnsPath);
// Writes the value. Throws SysError (errno) on failure.
void WriteNetSysctl(const std::string& name, const std::string& value, const std::string& netnsPath);

}  // namespace svcplane
