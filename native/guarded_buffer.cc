#include "guarded_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace svcplane {

GuardedBuffer::~GuardedBuffer() { Unmap(); }

void GuardedBuffer::Unmap() {
  if (base_) munmap(base_, mapped_);
  base_ = nullptr;
  usable_ = mapped_ = 0;
}

uint8_t* GuardedBuffer::Reserve(size_t bytes) {
  if (base_ && bytes <= usable_) return base_;
  Unmap();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t usable = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, usable + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw SysError(ENOMEM, "encoding buffer of " + std::to_string(usable) + " bytes: " + ErrnoText(errno));
  base_ = static_cast<uint8_t*>(p);
  mapped_ = usable + page;
  usable_ = usable;
  if (mprotect(base_ + usable_, page, PROT_NONE) < 0) {
    int err = errno;
    Unmap();
    throw SysError(err, "guard page of the encoding buffer: " + ErrnoText(err));
  }
  return base_;
}

void GuardedBuffer::Trim(size_t keep) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  keep = (keep + page - 1) / page * page;
  if (base_ && keep < usable_) madvise(base_ + keep, usable_ - keep, MADV_DONTNEED);
}

GuardedBuffer& ThreadScratch() {
  thread_local GuardedBuffer scratch;
  return scratch;
}

}  // namespace svcplane
