// Memory that a writer which never checks bounds (libnftnl's *_nlmsg_build_payload, which appends attributes with
// mnl_attr_put) writes into: an anonymous mapping followed by an inaccessible guard page. A write past the end
// faults at that instruction instead of corrupting the heap; pages never written cost no memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace svcplane {

class GuardedBuffer {
 public:
  GuardedBuffer() = default;
  ~GuardedBuffer();
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  // At least `bytes` usable bytes, all zero (the caller zeroes what it used before the next Reserve). Throws
  // SysError(ENOMEM) when the mapping cannot be made.
  uint8_t* Reserve(size_t bytes);
  uint8_t* data() const { return base_; }
  size_t size() const { return usable_; }
  // Returns the pages past the first `keep` bytes to the system (they read as zero again), keeping the mapping.
  void Trim(size_t keep);

 private:
  void Unmap();
  uint8_t* base_ = nullptr;
  size_t usable_ = 0;
  size_t mapped_ = 0;
};

// One per thread, kept between uses: mapping and unmapping per batch cost more than encoding a small one (munmap
// in a threaded process interrupts every other thread to flush its TLB).
GuardedBuffer& ThreadScratch();

}  // namespace svcplane
