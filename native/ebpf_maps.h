// Element operations on one BPF map by fd, many elements per syscall: BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH /
// BPF_MAP_LOOKUP_BATCH (5.6+ for hash and LRU maps), falling back to one call per element where the kernel has no
// batch for the map. Keys and values travel as packed arrays of fixed-size records (maps.h layouts).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace svcplane {

struct MapOpStats {
  uint64_t syscalls = 0;
  uint64_t micros = 0;  // time inside the bpf() calls
};

// Writes count elements (BPF_ANY). Throws naming the map and the first key it could not write.
void MapUpdate(int fd, const std::string& name, const uint8_t* keys, const uint8_t* values, uint32_t count,
               uint32_t keySize, uint32_t valueSize, MapOpStats& stats);
// Deletes count elements; a key that is absent is not an error.
void MapDelete(int fd, const std::string& name, const uint8_t* keys, uint32_t count, uint32_t keySize, MapOpStats& stats);
// Every element: keys and values appended, packed.
uint32_t MapDump(int fd, const std::string& name, uint32_t keySize, uint32_t valueSize, std::vector<uint8_t>& keys,
                 std::vector<uint8_t>& values, MapOpStats& stats);

}  // namespace svcplane
