#include "nft_records.h"

#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>

#include <cstring>

namespace svcplane {
namespace {

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  template <typename T>
  T Get() {
    Need(sizeof(T));
    T v;
    std::memcpy(&v, p_ + off_, sizeof(T));
    off_ += sizeof(T);
    return v;
  }
  std::string_view Bytes(size_t len) {
    Need(len);
    std::string_view v(reinterpret_cast<const char*>(p_ + off_), len);
    off_ += len;
    return v;
  }
  bool AtEnd() const { return off_ == n_; }

 private:
  void Need(size_t len) {
    if (len > n_ - off_) throw RecordFormatError("record stream truncated at byte " + std::to_string(off_));
  }
  const uint8_t* p_;
  size_t n_;
  size_t off_ = 0;
};

Attrs ReadAttrs(Reader& r) {
  uint16_t count = r.Get<uint16_t>();
  Attrs attrs;
  attrs.reserve(count);
  for (uint16_t i = 0; i < count; i++) {
    uint16_t type = r.Get<uint16_t>();
    uint32_t len = r.Get<uint32_t>();
    attrs.push_back(Attr{type, r.Bytes(len)});
  }
  return attrs;
}

std::string AttrString(const Attrs& attrs, uint16_t type) {
  for (const auto& a : attrs) {
    if (a.type == type) {
      std::string s(a.value);
      if (!s.empty() && s.back() == '\0') s.pop_back();
      return s;
    }
  }
  return "?";
}

const char* FamilyName(uint8_t f) {
  switch (f) {
    case NFPROTO_IPV4: return "ip";
    case NFPROTO_IPV6: return "ip6";
    case NFPROTO_INET: return "inet";
    case NFPROTO_ARP: return "arp";
    case NFPROTO_BRIDGE: return "bridge";
    case NFPROTO_NETDEV: return "netdev";
    default: return "family?";
  }
}

}  // namespace

std::vector<Record> ParseRecords(const uint8_t* data, size_t len) {
  Reader r(data, len);
  if (r.Get<uint32_t>() != kRecordMagic) throw RecordFormatError("bad record stream magic");
  if (r.Get<uint32_t>() != kRecordVersion) throw RecordFormatError("unsupported record stream version");
  uint32_t count = r.Get<uint32_t>();
  std::vector<Record> out;
  out.reserve(count);
  for (uint32_t i = 0; i < count; i++) {
    Record rec;
    uint8_t action = r.Get<uint8_t>();
    uint8_t kind = r.Get<uint8_t>();
    if (action < 1 || action > 2) throw RecordFormatError("record " + std::to_string(i) + ": bad action");
    if (kind < 1 || kind > 5) throw RecordFormatError("record " + std::to_string(i) + ": bad kind");
    rec.action = static_cast<Action>(action);
    rec.kind = static_cast<Kind>(kind);
    rec.family = r.Get<uint8_t>();
    r.Get<uint8_t>();
    rec.nlflags = r.Get<uint16_t>();
    r.Get<uint16_t>();
    rec.attrs = ReadAttrs(r);
    if (rec.kind == Kind::Rule) {
      uint16_t n = r.Get<uint16_t>();
      rec.children.reserve(n);
      for (uint16_t j = 0; j < n; j++) rec.children.push_back(ReadAttrs(r));
    } else if (rec.kind == Kind::SetElem) {
      uint32_t n = r.Get<uint32_t>();
      rec.children.reserve(n);
      for (uint32_t j = 0; j < n; j++) rec.children.push_back(ReadAttrs(r));
    }
    out.push_back(std::move(rec));
  }
  if (!r.AtEnd()) throw RecordFormatError("trailing bytes after the last record");
  return out;
}

RecordWriter::RecordWriter() {
  uint32_t header[3] = {kRecordMagic, kRecordVersion, 0};
  out_.resize(sizeof(header));  // not Put(): GCC 12 warns falsely (-Wstringop-overflow) on the inlined insert
  std::memcpy(out_.data(), header, sizeof(header));
}

void RecordWriter::Begin(Action action, Kind kind, uint8_t family, uint16_t nlflags) {
  uint8_t head[4] = {static_cast<uint8_t>(action), static_cast<uint8_t>(kind), family, 0};
  Put(head, 4);
  uint16_t flags[2] = {nlflags, 0};
  Put(flags, 4);
  current_ = kind;
  count_++;
}

void RecordWriter::Attrs(const std::vector<std::pair<uint16_t, std::string>>& attrs) {
  uint16_t n = static_cast<uint16_t>(attrs.size());
  Put(&n, 2);
  for (const auto& [type, value] : attrs) {
    uint32_t len = static_cast<uint32_t>(value.size());
    Put(&type, 2);
    Put(&len, 4);
    Put(value.data(), value.size());
  }
}

void RecordWriter::ChildCount(uint32_t count) {
  if (current_ == Kind::Rule) {
    uint16_t n = static_cast<uint16_t>(count);
    Put(&n, 2);
  } else {
    Put(&count, 4);
  }
}

std::vector<uint8_t> RecordWriter::Finish() {
  std::memcpy(out_.data() + 8, &count_, 4);
  return std::move(out_);
}

std::vector<uint8_t> RecordWriter::TakeRecords() {
  std::vector<uint8_t> records(out_.begin() + 12, out_.end());
  out_.resize(12);
  count_ = 0;
  return records;
}

void RecordWriter::AppendRecords(const std::vector<uint8_t>& records, uint32_t count) {
  Put(records.data(), records.size());
  count_ += count;
}

std::string DescribeRecord(const Record& r) {
  std::string verb = r.action == Action::New ? "add" : "delete";
  std::string fam = FamilyName(r.family);
  switch (r.kind) {
    case Kind::Table:
      return verb + " table " + fam + " " + AttrString(r.attrs, NFTNL_TABLE_NAME);
    case Kind::Chain:
      return verb + " chain " + fam + " " + AttrString(r.attrs, NFTNL_CHAIN_TABLE) + " " +
             AttrString(r.attrs, NFTNL_CHAIN_NAME);
    case Kind::Rule:
      if (r.action == Action::Del && r.children.empty()) {
        bool hasHandle = false;
        for (const auto& a : r.attrs) hasHandle |= a.type == NFTNL_RULE_HANDLE;
        if (!hasHandle)
          return "flush chain " + fam + " " + AttrString(r.attrs, NFTNL_RULE_TABLE) + " " +
                 AttrString(r.attrs, NFTNL_RULE_CHAIN);
      }
      return verb + " rule " + fam + " " + AttrString(r.attrs, NFTNL_RULE_TABLE) + " " +
             AttrString(r.attrs, NFTNL_RULE_CHAIN);
    case Kind::Set:
      return verb + " set " + fam + " " + AttrString(r.attrs, NFTNL_SET_TABLE) + " " +
             AttrString(r.attrs, NFTNL_SET_NAME);
    case Kind::SetElem:
      if (r.action == Action::Del && r.children.empty())
        return "flush set " + fam + " " + AttrString(r.attrs, NFTNL_SET_TABLE) + " " +
               AttrString(r.attrs, NFTNL_SET_NAME);
      return verb + " " + std::to_string(r.children.size()) + " element(s) " +
             (r.action == Action::New ? "to" : "from") + " set " + fam + " " +
             AttrString(r.attrs, NFTNL_SET_TABLE) + " " + AttrString(r.attrs, NFTNL_SET_NAME);
  }
  return "?";
}

}  // namespace svcplane
