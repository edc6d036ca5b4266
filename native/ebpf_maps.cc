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


// Runs `count` elements through batch calls of up to kChunk each, falling back to one call per element where the
// kernel has no batch operation for the map. batch(at, &n) and one(at) return 0 or an errno; n comes back as how
// many the kernel did before it stopped. `tolerated` (delete: ENOENT, an absent key) is no failure: a batch stops at
// such an element, which is then done alone, and the batch goes on after it.
template <typename Batch, typename One, typename Describe>
void Chunked(uint32_t count, int tolerated, MapOpStats& stats, Batch batch, One one, Describe describe) {
  Timer t(stats);
  uint32_t done = 0;
  bool batched = true;
  while (done < count) {
    if (batched) {
      uint32_t n = std::min(kChunk, count - done);
      stats.syscalls++;
      int err = batch(done, &n);
      done += n;
      if (err == 0) continue;
      if (err != tolerated) {
        if (!NoBatch(err) || n > 0) throw SysError(err, describe(done, err));
        batched = false;
      }
      if (done >= count) break;
    }
    stats.syscalls++;
    int err = one(done);
    if (err && err != tolerated) throw SysError(err, describe(done, err));
    done++;
  }
}

int Errno(int rc) { return rc == 0 ? 0 : errno; }

}  // namespace

void MapUpdate(int fd, const std::string& name, const uint8_t* keys, const uint8_t* values, uint32_t count,
               uint32_t keySize, uint32_t valueSize, MapOpStats& stats) {
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY, .flags = 0);
  auto key = [&](uint32_t i) { return keys + size_t(i) * keySize; };
  auto value = [&](uint32_t i) { return values + size_t(i) * valueSize; };
  Chunked(count, 0, stats,
          [&](uint32_t at, uint32_t* n) { return Errno(bpf_map_update_batch(fd, key(at), value(at), n, &opts)); },
          [&](uint32_t at) { return Errno(bpf_map_update_elem(fd, key(at), value(at), BPF_ANY)); },
          [&](uint32_t at, int err) {
            return "update BPF map " + name + " (element " + std::to_string(at) + ", key " + (at < count ? Hex(key(at), keySize) : "-") + "): " + ErrnoText(err);
          });
}

void MapDelete(int fd, const std::string& name, const uint8_t* keys, uint32_t count, uint32_t keySize, MapOpStats& stats) {
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
  auto key = [&](uint32_t i) { return keys + size_t(i) * keySize; };
  Chunked(count, ENOENT, stats,
          [&](uint32_t at, uint32_t* n) { return Errno(bpf_map_delete_batch(fd, key(at), n, &opts)); },
          [&](uint32_t at) { return Errno(bpf_map_delete_elem(fd, key(at))); },
          [&](uint32_t at, int err) {
            return "delete from BPF map " + name + " (element " + std::to_string(at) + ", key " + (at < count ? Hex(key(at), keySize) : "-") + "): " + ErrnoText(err);
          });
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
