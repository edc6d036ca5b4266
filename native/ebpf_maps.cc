#include "ebpf_maps.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "errors.h"

namespace svcplane {

namespace {

constexpr uint32_t kChunk = 8192;  // elements per batch call: bounds the kernel's temporary copy

// Whether errno says "no batch operation for this map on this kernel" (kernels before 5.6, or map types without it).
bool NoBatch(int err) { return err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP || err == 524 /* ENOTSUPP */; }

std::string Hex(const uint8_t* p, uint32_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint32_t i = 0; i < n; i++) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

struct Timer {
  MapOpStats& stats;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  explicit Timer(MapOpStats& s) : stats(s) {}
  ~Timer() {
    stats.micros += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  }
};

}  // namespace

void MapUpdate(int fd, const std::string& name, const uint8_t* keys, const uint8_t* values, uint32_t count,
               uint32_t keySize, uint32_t valueSize, MapOpStats& stats) {
  Timer t(stats);
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY, .flags = 0);
  uint32_t done = 0;
  bool batch = true;
  while (done < count) {
    if (batch) {
      uint32_t n = std::min(kChunk, count - done);
      stats.syscalls++;
      if (bpf_map_update_batch(fd, keys + size_t(done) * keySize, values + size_t(done) * valueSize, &n, &opts) == 0) {
        done += n;
        continue;
      }
      int err = errno;
      done += n;  // n: how many the kernel wrote before it stopped
      if (!NoBatch(err) || n > 0)
        throw SysError(err, "update BPF map " + name + " (element " + std::to_string(done) + ", key " +
                                Hex(keys + size_t(done) * keySize, keySize) + "): " + ErrnoText(err));
      batch = false;
    }
    stats.syscalls++;
    if (bpf_map_update_elem(fd, keys + size_t(done) * keySize, values + size_t(done) * valueSize, BPF_ANY) != 0) {
      int err = errno;
      throw SysError(err, "update BPF map " + name + " (key " + Hex(keys + size_t(done) * keySize, keySize) + "): " + ErrnoText(err));
    }
    done++;
  }
}

void MapDelete(int fd, const std::string& name, const uint8_t* keys, uint32_t count, uint32_t keySize, MapOpStats& stats) {
  Timer t(stats);
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
  uint32_t done = 0;
  bool batch = true;
  while (done < count) {
    if (batch) {
      uint32_t n = std::min(kChunk, count - done);
      stats.syscalls++;
      if (bpf_map_delete_batch(fd, keys + size_t(done) * keySize, &n, &opts) == 0) {
        done += n;
        continue;
      }
      int err = errno;
      done += n;
      // A batch delete stops at the first absent key (ENOENT): go on one by one from there.
      if (err != ENOENT && (!NoBatch(err) || n > 0))
        throw SysError(err, "delete from BPF map " + name + " (element " + std::to_string(done) + "): " + ErrnoText(err));
      if (NoBatch(err)) batch = false;
      if (done >= count) break;
    }
    stats.syscalls++;
    if (bpf_map_delete_elem(fd, keys + size_t(done) * keySize) != 0 && errno != ENOENT) {
      int err = errno;
      throw SysError(err, "delete from BPF map " + name + " (key " + Hex(keys + size_t(done) * keySize, keySize) + "): " + ErrnoText(err));
    }
    done++;
  }
}

uint32_t MapDump(int fd, const std::string& name, uint32_t keySize, uint32_t valueSize, std::vector<uint8_t>& keys,
                 std::vector<uint8_t>& values, MapOpStats& stats) {
  Timer t(stats);
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
  uint32_t total = 0;
  std::vector<uint8_t> inBatch(keySize > 8 ? keySize : 8), outBatch(inBatch.size());
  bool first = true;
  uint32_t chunk = kChunk;
  for (;;) {
    size_t at = keys.size() / keySize;
    keys.resize((at + chunk) * keySize);
    values.resize((at + chunk) * valueSize);
    uint32_t n = chunk;
    stats.syscalls++;
    int rc = bpf_map_lookup_batch(fd, first ? nullptr : inBatch.data(), outBatch.data(), keys.data() + at * keySize,
                                  values.data() + at * valueSize, &n, &opts);
    int err = rc ? errno : 0;
    keys.resize((at + n) * keySize);
    values.resize((at + n) * valueSize);
    total += n;
    if (rc == 0 || (err == ENOENT)) {
      if (err == ENOENT) return total;  // the last batch
      inBatch = outBatch;
      first = false;
      continue;
    }
    if (err == ENOSPC && n == 0) {  // one hash bucket holds more than a chunk: ask for more
      chunk *= 2;
      continue;
    }
    if (NoBatch(err) && first) break;
    throw SysError(err, "dump BPF map " + name + ": " + ErrnoText(err));
  }
  // No batch lookup: walk the keys.
  keys.clear();
  values.clear();
  total = 0;
  std::vector<uint8_t> key(keySize), next(keySize), value(valueSize);
  const void* prev = nullptr;
  for (;;) {
    stats.syscalls++;
    if (bpf_map_get_next_key(fd, prev, next.data()) != 0) {
      if (errno == ENOENT) return total;
      throw SysError(errno, "dump BPF map " + name + ": " + ErrnoText(errno));
    }
    stats.syscalls++;
    if (bpf_map_lookup_elem(fd, next.data(), value.data()) == 0) {
      keys.insert(keys.end(), next.begin(), next.end());
      values.insert(values.end(), value.begin(), value.end());
      total++;
    }
    key = next;
    prev = key.data();
  }
}

}  // namespace svcplane
