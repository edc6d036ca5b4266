// The record stream: the one binary format that carries nftables objects across the JS/C++ boundary, in both
// directions. TypeScript encodes a transaction as records (src/native/recordStream.ts); the
// addon turns each record into one libnftnl object and one netlink message. A dump comes back as the same
// records (action NEW), so encode and decode are mirror images and a dump can be replayed as a batch.
//
// Why a byte stream and not JS objects: a 30k-Service sync is ~10^6 attributes; reading them one N-API
// property at a time costs more than the kernel's whole commit. The addon stays generic: attributes are
// libnftnl attribute numbers with raw values (host order for integers, as nftnl_*_set_data expects), so it
// holds no knowledge of expressions, rules or Kubernetes.
//
// Layout (little-endian):
//   stream := u32 magic 'SVNB' | u32 version (1) | u32 record count | record*
//   record := u8 action | u8 kind | u8 family | u8 0 | u16 nlmsg flags | u16 0 | attrs | tail
//   attrs  := u16 count | (u16 type | u32 len | len bytes)*
//   tail   := RULE: u16 expr count | attrs* (attr 0 = NFTNL_EXPR_NAME)
//             SETELEM: u32 element count | attrs*
//             others: nothing
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace svcplane {

constexpr uint32_t kRecordMagic = 0x424e5653;  // "SVNB" read as little-endian u32
constexpr uint32_t kRecordVersion = 1;

enum class Action : uint8_t { New = 1, Del = 2 };
enum class Kind : uint8_t { Table = 1, Chain = 2, Rule = 3, Set = 4, SetElem = 5 };

struct Attr {
  uint16_t type;
  std::string_view value;  // points into the stream buffer (or into Record-owned storage for dumps)
};
using Attrs = std::vector<Attr>;

struct Record {
  Action action = Action::New;
  Kind kind = Kind::Table;
  uint8_t family = 0;
  uint16_t nlflags = 0;
  Attrs attrs;
  std::vector<Attrs> children;  // expressions of a rule, or elements of a SETELEM record
};

class RecordFormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses a whole stream. The returned records point into `data`, which must outlive them.
std::vector<Record> ParseRecords(const uint8_t* data, size_t len);

// Writes records (used for dumps). Values are copied into the output.
class RecordWriter {
 public:
  RecordWriter();
  void Begin(Action action, Kind kind, uint8_t family, uint16_t nlflags);
  void Attrs(const std::vector<std::pair<uint16_t, std::string>>& attrs);
  void ChildCount(uint32_t count);  // u16 for rules, u32 for elements: chosen from the current record's kind
  std::vector<uint8_t> Finish();
  uint32_t count() const { return count_; }
  // The records written so far, without the stream header (for AppendRecords); the writer starts over.
  std::vector<uint8_t> TakeRecords();
  // Records taken from another writer.
  void AppendRecords(const std::vector<uint8_t>& records, uint32_t count);

 private:
  void Put(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  std::vector<uint8_t> out_;
  uint32_t count_ = 0;
  Kind current_ = Kind::Table;
};

// "table ip svcplane", "chain ip svcplane services", "set ip svcplane service-ips", ... for error messages.
std::string DescribeRecord(const Record& r);

}  // namespace svcplane
