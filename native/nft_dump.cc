#include "nft_dump.h"

#include <libnftnl/common.h>
#include <libnftnl/gen.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <chrono>
#include <functional>
#include <map>
#include <thread>

#include "nft_objects.h"
#include "nft_records.h"
#include "nl_exchange.h"

namespace svcplane {
namespace {

using AttrList = std::vector<std::pair<uint16_t, std::string>>;

// `strings` lists the attributes that hold C strings: their length is taken from the string itself, because
// some libnftnl getters report a fixed size for them (nftnl_chain_get_data(NFTNL_CHAIN_TYPE) says 4).
template <typename Obj, typename IsSet, typename Get>
AttrList Collect(Obj* o, uint16_t max, IsSet isSet, Get get, std::initializer_list<uint16_t> skip = {},
                 std::initializer_list<uint16_t> strings = {}) {
  AttrList out;
  for (uint16_t a = 0; a <= max; a++) {
    bool skipped = false;
    for (uint16_t s : skip) skipped |= s == a;
    if (skipped || !isSet(o, a)) continue;
    uint32_t len = 0;
    const void* p = get(o, a, &len);
    if (!p) continue;
    bool isString = false;
    for (uint16_t s : strings) isString |= s == a;
    if (isString) len = static_cast<uint32_t>(strlen(static_cast<const char*>(p)) + 1);
    out.emplace_back(a, std::string(static_cast<const char*>(p), len));
  }
  return out;
}

void WriteRule(RecordWriter& w, nftnl_rule* r, uint8_t family) {
  w.Begin(Action::New, Kind::Rule, family, 0);
  w.Attrs(Collect(r, NFTNL_RULE_MAX, nftnl_rule_is_set, nftnl_rule_get_data, {}, {NFTNL_RULE_TABLE, NFTNL_RULE_CHAIN}));
  std::vector<AttrList> exprs;
  ExprIterPtr it(nftnl_expr_iter_create(r));
  for (nftnl_expr* e = nftnl_expr_iter_next(it.get()); e; e = nftnl_expr_iter_next(it.get())) {
    const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
    // Attributes that hold nested libnftnl objects, not bytes, are left out.
    bool dynset = name && strcmp(name, "dynset") == 0;
    AttrList attrs;
    if (name) attrs.emplace_back(NFTNL_EXPR_NAME, std::string(name, strlen(name) + 1));
    for (uint16_t a = NFTNL_EXPR_BASE; a < 32; a++) {
      if (dynset && (a == NFTNL_EXPR_DYNSET_EXPR || a == NFTNL_EXPR_DYNSET_EXPRESSIONS)) continue;
      if (!nftnl_expr_is_set(e, a)) continue;
      uint32_t len = 0;
      const void* p = nftnl_expr_get(e, a, &len);
      if (p) attrs.emplace_back(a, std::string(static_cast<const char*>(p), len));
    }
    exprs.push_back(std::move(attrs));
  }
  w.ChildCount(static_cast<uint32_t>(exprs.size()));
  for (const auto& e : exprs) w.Attrs(e);
}

using ChainRecords = std::map<std::string, std::vector<uint8_t>>;  // chain name -> its record

// One read of a table, in pieces, so chains found by several reads can be put together (see DumpTable).
struct TableRead {
  bool exists = false;
  bool interrupted = false;  // the kernel flagged a reply part: someone committed while it was being read
  std::vector<uint8_t> table;  // the table's record
  ChainRecords chains;         // this table's chains, once each
  std::vector<uint8_t> rest;   // sets, their elements, rules: records
  uint32_t restCount = 0;
  int64_t chainsCounted = -1;  // the chains the table says it holds: its use count (chains + sets) less its sets
};

TableRead ReadTable(NetlinkSocket& sock, uint8_t family, const std::string& table) {
  TableRead out;
  auto talk = [&](const std::string& what, const std::function<nlmsghdr*(char*, uint32_t)>& build,
                  const std::function<void(const nlmsghdr*)>& onReply) {
    out.interrupted |= Exchange(sock, what, build, onReply).interrupted;
  };

  // The table itself (a plain GET: ENOENT when absent).
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
  int64_t tableUse = -1;
  try {
    talk(
        "get table " + table,
        [&](char* buf, uint32_t seq) {
          nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, family, NLM_F_ACK, seq);
          nftnl_table_nlmsg_build_payload(nlh, t.get());
          return nlh;
        },
        [&](const nlmsghdr* nlh) {
          TablePtr got(nftnl_table_alloc());
          if (nftnl_table_nlmsg_parse(nlh, got.get()) < 0) return;
          if (nftnl_table_is_set(got.get(), NFTNL_TABLE_USE)) tableUse = nftnl_table_get_u32(got.get(), NFTNL_TABLE_USE);
          RecordWriter w;
          w.Begin(Action::New, Kind::Table, family, 0);
          w.Attrs(Collect(got.get(), NFTNL_TABLE_MAX, nftnl_table_is_set, nftnl_table_get_data, {}, {NFTNL_TABLE_NAME}));
          out.table = w.TakeRecords();
        });
  } catch (const SysError& e) {
    if (e.errnum == ENOENT) return out;  // no table: nothing programmed
    throw;
  }
  out.exists = true;

  // Chains: the kernel dumps every chain of the family; keep this table's, once each (a dump resumed after a
  // commit elsewhere can repeat one).
  talk(
      "dump chains",
      [&](char* buf, uint32_t seq) { return nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, family, NLM_F_DUMP, seq); },
      [&](const nlmsghdr* nlh) {
        ChainPtr c(nftnl_chain_alloc());
        if (nftnl_chain_nlmsg_parse(nlh, c.get()) < 0) return;
        const char* tn = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE);
        const char* name = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME);
        if (!tn || table != tn || !name) return;
        RecordWriter w;
        w.Begin(Action::New, Kind::Chain, family, 0);
        w.Attrs(Collect(c.get(), NFTNL_CHAIN_MAX, nftnl_chain_is_set, nftnl_chain_get_data,
                        {NFTNL_CHAIN_DEV, NFTNL_CHAIN_DEVICES}, {NFTNL_CHAIN_NAME, NFTNL_CHAIN_TABLE, NFTNL_CHAIN_TYPE}));
        out.chains[name] = w.TakeRecords();
      });

  // Sets (and maps) of this table, then each one's elements.
  RecordWriter w;
  std::vector<SetPtr> sets;
  talk(
      "dump sets",
      [&](char* buf, uint32_t seq) {
        nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSET, family, NLM_F_DUMP, seq);
        SetPtr s(nftnl_set_alloc());
        nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
        nftnl_set_nlmsg_build_payload(nlh, s.get());
        return nlh;
      },
      [&](const nlmsghdr* nlh) {
        SetPtr s(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(nlh, s.get()) < 0) return;
        const char* tn = nftnl_set_get_str(s.get(), NFTNL_SET_TABLE);
        if (!tn || table != tn) return;
        w.Begin(Action::New, Kind::Set, family, 0);
        w.Attrs(Collect(s.get(), NFTNL_SET_MAX, nftnl_set_is_set, nftnl_set_get_data,
                        {NFTNL_SET_EXPR, NFTNL_SET_EXPRESSIONS}, {NFTNL_SET_TABLE, NFTNL_SET_NAME}));
        sets.push_back(std::move(s));
      });
  // A table's use count is its chains plus its sets (plus stateful objects and flowtables, which svcplane never
  // makes: a table holding some never counts as read whole, and waits for a snapshot).
  if (tableUse >= 0) out.chainsCounted = tableUse - static_cast<int64_t>(sets.size());
  for (const auto& s : sets) {
    const char* name = nftnl_set_get_str(s.get(), NFTNL_SET_NAME);
    SetPtr holder(nftnl_set_alloc());
    nftnl_set_set_str(holder.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(holder.get(), NFTNL_SET_NAME, name);
    talk(
        std::string("dump elements of set ") + name,
        [&](char* buf, uint32_t seq) {
          nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, family, NLM_F_DUMP, seq);
          nftnl_set_elems_nlmsg_build_payload(nlh, holder.get());
          return nlh;
        },
        [&](const nlmsghdr* nlh) { nftnl_set_elems_nlmsg_parse(nlh, holder.get()); });
    std::vector<AttrList> elems;
    ElemIterPtr it(nftnl_set_elems_iter_create(holder.get()));
    for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it.get()); e; e = nftnl_set_elems_iter_next(it.get()))
      elems.push_back(Collect(e, NFTNL_SET_ELEM_MAX, nftnl_set_elem_is_set, nftnl_set_elem_get,
                              {NFTNL_SET_ELEM_EXPR, NFTNL_SET_ELEM_EXPRESSIONS}, {NFTNL_SET_ELEM_CHAIN}));
    w.Begin(Action::New, Kind::SetElem, family, 0);
    w.Attrs({{NFTNL_SET_TABLE, table + '\0'}, {NFTNL_SET_NAME, std::string(name) + '\0'}});
    w.ChildCount(static_cast<uint32_t>(elems.size()));
    for (const auto& e : elems) w.Attrs(e);
  }

  // Rules of this table (the kernel filters by NFTA_RULE_TABLE), in chain order.
  talk(
      "dump rules",
      [&](char* buf, uint32_t seq) {
        nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, family, NLM_F_DUMP, seq);
        RulePtr r(nftnl_rule_alloc());
        nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
        nftnl_rule_nlmsg_build_payload(nlh, r.get());
        return nlh;
      },
      [&](const nlmsghdr* nlh) {
        RulePtr r(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return;
        const char* tn = nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE);
        if (!tn || table != tn) return;
        WriteRule(w, r.get(), family);
      });

  out.restCount = w.count();
  out.rest = w.TakeRecords();
  return out;
}

// The record stream of a read, with the given chains (before the rules, which name them).
DumpResult Compose(TableRead& r, const ChainRecords& chains, uint32_t generation) {
  DumpResult out;
  out.generation = generation;
  out.exists = r.exists;
  if (!r.exists) return out;
  RecordWriter w;
  w.AppendRecords(r.table, 1);
  for (const auto& [name, record] : chains) w.AppendRecords(record, 1);
  w.AppendRecords(r.rest, r.restCount);
  out.records = w.Finish();
  return out;
}

}  // namespace

uint32_t GetGeneration(NetlinkSocket& sock) {
  uint32_t id = 0;
  Exchange(
      sock, "get ruleset generation",
      [&](char* buf, uint32_t seq) { return nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, seq); },
      [&](const nlmsghdr* nlh) {
        nftnl_gen* g = nftnl_gen_alloc();
        if (nftnl_gen_nlmsg_parse(nlh, g) == 0) id = nftnl_gen_get_u32(g, NFTNL_GEN_ID);
        nftnl_gen_free(g);
      });
  return id;
}

// A dump is several requests, and each multi-part reply is read over several recvmsg calls; every commit by anyone in
// the namespace meanwhile moves the ruleset generation and makes the kernel flag the reply part after it
// (NLM_F_DUMP_INTR). Under a steady stream of foreign commits (another agent, iptables-nft, a firewall daemon)
// a read of a large table is never free of both, so insisting on that would fail the sync for as long as the other
// writer is busy.
//
// What a foreign commit can do to a read of svcplane's table, on every kernel since 5.13: the table GET is one
// message (atomic); the sets, elements and rules dumps walk this table only (the kernel filters them by table
// before counting positions), so commits elsewhere cannot make them skip or repeat anything; the chains dump walks
// every chain of the family by position, so a chain added or deleted in a table ahead of ours shifts it: one of
// ours repeated (harmless: kept once, by name) or skipped. A skip shows as fewer chains than the table's use count
// (chains + sets), and chains found by an earlier read of the same dump fill it in (the table is svcplane's alone:
// one writer, by the writer lock). So: a read with the generation unchanged and no part flagged is a snapshot of the
// whole ruleset and is taken at once; from the second attempt on, a read whose chains add up is taken too.
DumpResult DumpTable(NetlinkSocket& sock, uint8_t family, const std::string& table) {
  constexpr int kSnapshotAttempts = 1;  // before settling for a read that is whole for this table
  // Only a writer changing svcplane's own table all the time gets this far (see above).
  constexpr int kMaxAttempts = 100;
  constexpr auto kMaxTime = std::chrono::seconds(60);
  const auto giveUp = std::chrono::steady_clock::now() + kMaxTime;
  ChainRecords known;  // chains found by this dump's reads so far
  for (int attempt = 1;; attempt++) {
    const uint32_t before = GetGeneration(sock);
    TableRead r = ReadTable(sock, family, table);
    const uint32_t after = GetGeneration(sock);
    if (!r.interrupted && before == after) return Compose(r, r.chains, before);  // a snapshot of the whole ruleset
    if (!r.exists) {
      if (attempt > kSnapshotAttempts) return Compose(r, r.chains, before);  // one GET: atomic
    } else {
      for (const auto& [name, record] : r.chains) known[name] = record;  // this read's version wins
      // More chains than the table holds: one found earlier is gone (the table changed), start again from this read.
      if (static_cast<int64_t>(known.size()) > r.chainsCounted) known = r.chains;
      if (attempt > kSnapshotAttempts && static_cast<int64_t>(known.size()) == r.chainsCounted) return Compose(r, known, before);
    }
    if (attempt >= kMaxAttempts || std::chrono::steady_clock::now() > giveUp)
      throw SysError(EAGAIN, "dump table " + table + ": the ruleset kept changing while being read (" +
                                 std::to_string(attempt) + " attempts); is another writer changing this table?");
    // Let a burst of commits pass; every attempt still reads, so progress never depends on the other writer pausing.
    std::this_thread::sleep_for(std::chrono::milliseconds(attempt < 10 ? attempt : 10));
  }
}

}  // namespace svcplane
