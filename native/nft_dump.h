// Read-back: one table's chains, sets, elements and rules, as a record stream (see nft_records.h), taken
// between two equal ruleset generation ids so it is a consistent snapshot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "netlink_socket.h"

namespace svcplane {

struct DumpResult {
  bool exists = false;
  uint32_t generation = 0;
  std::vector<uint8_t> records;  // empty when the table does not exist
};

DumpResult DumpTable(NetlinkSocket& sock, uint8_t family, const std::string& table);

// The current ruleset generation id (NFT_MSG_GETGEN).
uint32_t GetGeneration(NetlinkSocket& sock);

}  // namespace svcplane
