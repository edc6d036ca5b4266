#include "nft_dump.h"

#include <libnftnl/common.h>
#include <libnftnl/gen.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "nft_objects.h"
#include "nft_records.h"

namespace svcplane {
namespace {

using AttrList = std::vector<std::pair<uint16_t, std::string>>;

struct DumpInterrupted {};  // the ruleset changed while we read it: start again

struct CallbackContext {
  std::function<void(const nlmsghdr*)> onMessage;
};

int Trampoline(const nlmsghdr* nlh, void* data) {
  static_cast<CallbackContext*>(data)->onMessage(nlh);
  return MNL_CB_OK;
}

// Sends one request and feeds every reply message to onMessage until the dump (or ack) ends.
void Talk(NetlinkSocket& sock, const std::string& what, const std::function<nlmsghdr*(char*, uint32_t)>& build,
          const std::function<void(const nlmsghdr*)>& onMessage) {
  char req[MNL_SOCKET_BUFFER_SIZE] = {};  // zeroed: libnftnl leaves some padding bytes unwritten
  uint32_t seq = sock.NextSeq(1);
  nlmsghdr* nlh = build(req, seq);
  if (mnl_socket_sendto(sock.get(), nlh, nlh->nlmsg_len) < 0)
    throw NetlinkError(errno, what + ": send: " + ErrnoText(errno));
  // Large reads let the kernel fill bigger dump skbs (it sizes them to our last recvmsg buffer).
  char* buf = reinterpret_cast<char*>(sock.RecvBuffer());
  CallbackContext ctx{onMessage};
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock.get(), buf, NetlinkSocket::kRecvBufferBytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw NetlinkError(errno, what + ": receive: " + ErrnoText(errno));
    }
    int ret = mnl_cb_run(buf, n, seq, sock.portid(), Trampoline, &ctx);
    if (ret < 0) {
      if (errno == EINTR) throw DumpInterrupted{};  // NLM_F_DUMP_INTR
      throw NetlinkError(errno, what + ": " + ErrnoText(errno));
    }
    if (ret <= MNL_CB_STOP) return;
  }
}

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

DumpResult DumpOnce(NetlinkSocket& sock, uint8_t family, const std::string& table) {
  DumpResult out;
  out.generation = GetGeneration(sock);
  RecordWriter w;

  // The table itself (a plain GET: ENOENT when absent).
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
  try {
    Talk(
        sock, "get table " + table,
        [&](char* buf, uint32_t seq) {
          nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, family, NLM_F_ACK, seq);
          nftnl_table_nlmsg_build_payload(nlh, t.get());
          return nlh;
        },
        [&](const nlmsghdr* nlh) {
          TablePtr got(nftnl_table_alloc());
          if (nftnl_table_nlmsg_parse(nlh, got.get()) < 0) return;
          w.Begin(Action::New, Kind::Table, family, 0);
          w.Attrs(Collect(got.get(), NFTNL_TABLE_MAX, nftnl_table_is_set, nftnl_table_get_data, {}, {NFTNL_TABLE_NAME}));
        });
  } catch (const NetlinkError& e) {
    if (e.errnum == ENOENT) return out;  // no table: nothing programmed
    throw;
  }
  out.exists = true;

  // Chains: the kernel dumps every chain of the family; keep this table's.
  Talk(
      sock, "dump chains",
      [&](char* buf, uint32_t seq) { return nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, family, NLM_F_DUMP, seq); },
      [&](const nlmsghdr* nlh) {
        ChainPtr c(nftnl_chain_alloc());
        if (nftnl_chain_nlmsg_parse(nlh, c.get()) < 0) return;
        const char* tn = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE);
        if (!tn || table != tn) return;
        w.Begin(Action::New, Kind::Chain, family, 0);
        w.Attrs(Collect(c.get(), NFTNL_CHAIN_MAX, nftnl_chain_is_set, nftnl_chain_get_data,
                        {NFTNL_CHAIN_DEV, NFTNL_CHAIN_DEVICES}, {NFTNL_CHAIN_NAME, NFTNL_CHAIN_TABLE, NFTNL_CHAIN_TYPE}));
      });

  // Sets (and maps) of this table, then each one's elements.
  std::vector<SetPtr> sets;
  Talk(
      sock, "dump sets",
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
  for (const auto& s : sets) {
    const char* name = nftnl_set_get_str(s.get(), NFTNL_SET_NAME);
    SetPtr holder(nftnl_set_alloc());
    nftnl_set_set_str(holder.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(holder.get(), NFTNL_SET_NAME, name);
    Talk(
        sock, std::string("dump elements of set ") + name,
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
  Talk(
      sock, "dump rules",
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

  out.records = w.Finish();
  return out;
}

}  // namespace

uint32_t GetGeneration(NetlinkSocket& sock) {
  uint32_t id = 0;
  Talk(
      sock, "get ruleset generation",
      [&](char* buf, uint32_t seq) { return nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, seq); },
      [&](const nlmsghdr* nlh) {
        nftnl_gen* g = nftnl_gen_alloc();
        if (nftnl_gen_nlmsg_parse(nlh, g) == 0) id = nftnl_gen_get_u32(g, NFTNL_GEN_ID);
        nftnl_gen_free(g);
      });
  return id;
}

DumpResult DumpTable(NetlinkSocket& sock, uint8_t family, const std::string& table) {
  for (int attempt = 0;; attempt++) {
    try {
      DumpResult r = DumpOnce(sock, family, table);
      // Several requests make one snapshot only if no commit happened between them.
      if (GetGeneration(sock) == r.generation) return r;
    } catch (const DumpInterrupted&) {
    }
    if (attempt >= 20) throw NetlinkError(EAGAIN, "dump table " + table + ": the ruleset kept changing while being read");
  }
}

}  // namespace svcplane
