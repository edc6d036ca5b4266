#include "nft_commit.h"

#include <libnftnl/common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>

#include "guarded_buffer.h"
#include "nft_objects.h"
#include "nl_ack.h"

namespace svcplane {
namespace {

uint16_t MessageType(const Record& r) {
  bool add = r.action == Action::New;
  switch (r.kind) {
    case Kind::Table: return add ? NFT_MSG_NEWTABLE : NFT_MSG_DELTABLE;
    case Kind::Chain: return add ? NFT_MSG_NEWCHAIN : NFT_MSG_DELCHAIN;
    case Kind::Rule: return add ? NFT_MSG_NEWRULE : NFT_MSG_DELRULE;
    case Kind::Set: return add ? NFT_MSG_NEWSET : NFT_MSG_DELSET;
    case Kind::SetElem: return add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM;
  }
  return 0;
}

[[noreturn]] void Refused(size_t index, const Record& r, const char* what, uint16_t attr) {
  throw RecordFormatError("record " + std::to_string(index) + " (" + DescribeRecord(r) + "): libnftnl refused " +
                          what + " attribute " + std::to_string(attr));
}

// Attributes whose libnftnl setter takes a pointer to a libnftnl object or array, not bytes: from a record they
// would be dereferenced as addresses. svcplane never sends them; a record carrying one is refused.
bool HoldsPointer(Kind kind, uint16_t type) {
  switch (kind) {
    case Kind::Chain: return type == NFTNL_CHAIN_DEVICES;
    case Kind::Set: return type == NFTNL_SET_EXPR || type == NFTNL_SET_EXPRESSIONS;
    default: return false;
  }
}

template <typename Obj, typename SetFn>
void ApplyAttrs(Obj* obj, const Attrs& attrs, SetFn set, size_t index, const Record& r, const char* what, Kind kind) {
  for (const auto& a : attrs) {
    if (HoldsPointer(kind, a.type)) Refused(index, r, what, a.type);
    if (set(obj, a.type, a.value.data(), static_cast<uint32_t>(a.value.size())) < 0) Refused(index, r, what, a.type);
  }
}

// About the bytes libnftnl writes for one record (attribute payloads plus headers, nests and padding, doubled): sizes
// the encoding buffer. libnftnl writes without knowing the room it has, so this is not trusted (EncodeBatch).
size_t RoomFor(const Record& r) {
  size_t n = 256;
  for (const auto& a : r.attrs) n += a.value.size() + 16;
  for (const auto& child : r.children) {
    n += 32;
    for (const auto& a : child) n += a.value.size() + 24;
  }
  return n * 2;
}

void BuildPayload(nlmsghdr* nlh, const Record& r, size_t index) {
  switch (r.kind) {
    case Kind::Table: {
      TablePtr t(nftnl_table_alloc());
      ApplyAttrs(t.get(), r.attrs, nftnl_table_set_data, index, r, "table", Kind::Table);
      nftnl_table_nlmsg_build_payload(nlh, t.get());
      return;
    }
    case Kind::Chain: {
      ChainPtr c(nftnl_chain_alloc());
      ApplyAttrs(c.get(), r.attrs, nftnl_chain_set_data, index, r, "chain", Kind::Chain);
      nftnl_chain_nlmsg_build_payload(nlh, c.get());
      return;
    }
    case Kind::Rule: {
      RulePtr rule(nftnl_rule_alloc());
      ApplyAttrs(rule.get(), r.attrs, nftnl_rule_set_data, index, r, "rule", Kind::Rule);
      for (const auto& exprAttrs : r.children) {
        std::string name;
        for (const auto& a : exprAttrs)
          if (a.type == NFTNL_EXPR_NAME) name.assign(a.value.data(), strnlen(a.value.data(), a.value.size()));
        ExprPtr e(nftnl_expr_alloc(name.c_str()));
        if (!e) throw RecordFormatError("record " + std::to_string(index) + ": unknown expression '" + name + "'");
        const bool dynset = name == "dynset";
        for (const auto& a : exprAttrs) {
          if (a.type == NFTNL_EXPR_NAME) continue;
          if (dynset && (a.type == NFTNL_EXPR_DYNSET_EXPR || a.type == NFTNL_EXPR_DYNSET_EXPRESSIONS)) Refused(index, r, name.c_str(), a.type);
          if (nftnl_expr_set(e.get(), a.type, a.value.data(), static_cast<uint32_t>(a.value.size())) < 0)
            Refused(index, r, name.c_str(), a.type);
        }
        nftnl_rule_add_expr(rule.get(), e.release());  // the rule owns it from here
      }
      nftnl_rule_nlmsg_build_payload(nlh, rule.get());
      return;
    }
    case Kind::Set: {
      SetPtr s(nftnl_set_alloc());
      ApplyAttrs(s.get(), r.attrs, nftnl_set_set_data, index, r, "set", Kind::Set);
      nftnl_set_nlmsg_build_payload(nlh, s.get());
      return;
    }
    case Kind::SetElem: {
      SetPtr s(nftnl_set_alloc());
      ApplyAttrs(s.get(), r.attrs, nftnl_set_set_data, index, r, "set", Kind::Set);
      for (const auto& elemAttrs : r.children) {
        ElemPtr e(nftnl_set_elem_alloc());
        for (const auto& a : elemAttrs)
          if (a.type == NFTNL_SET_ELEM_EXPR || a.type == NFTNL_SET_ELEM_EXPRESSIONS) Refused(index, r, "element", a.type);
        ApplyAttrs(e.get(), elemAttrs, nftnl_set_elem_set, index, r, "element", Kind::SetElem);
        nftnl_set_elem_add(s.get(), e.release());  // the set owns it from here
      }
      nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
      return;
    }
  }
}

// Where in a request the attribute the kernel blamed (NLMSGERR_ATTR_OFFS) lies: its top-level attribute type and,
// for a rule, the expression holding it (nf_tables_newrule blames the NFTA_LIST_ELEM of the expression whose init
// failed). That is what turns "add rule: EINVAL" into "expression #5 (lookup)". Lengths checked throughout.
void LocateBadAttr(const uint8_t* msg, size_t len, uint32_t offset, BatchError& out) {
  if (len < NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg))) return;
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(msg);
  if (nlh->nlmsg_len < len) len = nlh->nlmsg_len;
  auto attrAt = [&](size_t off, size_t end) -> const nlattr* {
    if (off + NLA_HDRLEN > end) return nullptr;
    const auto* a = reinterpret_cast<const nlattr*>(msg + off);
    if (a->nla_len < NLA_HDRLEN || off + a->nla_len > end) return nullptr;
    return a;
  };
  for (size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)); const nlattr* a = attrAt(off, len); off += NLA_ALIGN(a->nla_len)) {
    if (offset < off || offset >= off + a->nla_len) continue;
    out.attribute = a->nla_type & NLA_TYPE_MASK;
    if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFT_MSG_NEWRULE || out.attribute != NFTA_RULE_EXPRESSIONS) return;
    const size_t end = off + a->nla_len;
    int index = 0;
    for (size_t in = off + NLA_HDRLEN; const nlattr* el = attrAt(in, end); in += NLA_ALIGN(el->nla_len), index++) {
      if (offset < in || offset >= in + el->nla_len) continue;
      out.expression = index;
      const size_t elEnd = in + el->nla_len;
      for (size_t x = in + NLA_HDRLEN; const nlattr* f = attrAt(x, elEnd); x += NLA_ALIGN(f->nla_len)) {
        if ((f->nla_type & NLA_TYPE_MASK) != NFTA_EXPR_NAME) continue;
        const char* name = reinterpret_cast<const char*>(f) + NLA_HDRLEN;
        out.expressionName.assign(name, strnlen(name, f->nla_len - NLA_HDRLEN));
      }
      return;
    }
    return;
  }
}

// The message with sequence number seq in an encoded batch (a linear walk: only done for refused records).
const nlmsghdr* MessageWithSeq(const EncodedBatch& batch, uint32_t seq) {
  int left = static_cast<int>(batch.bytes.size());
  for (auto* nlh = reinterpret_cast<const nlmsghdr*>(batch.bytes.data()); NLMSG_OK(nlh, left); nlh = NLMSG_NEXT(nlh, left))
    if (nlh->nlmsg_seq == seq) return nlh;
  return nullptr;
}

uint64_t MicrosSince(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

EncodedBatch EncodeBatch(const std::vector<Record>& records, uint32_t firstSeq, bool commit) {
  EncodedBatch out;
  out.firstSeq = firstSeq;
  size_t estimate = 64;
  for (const auto& r : records) estimate += RoomFor(r);
  out.bytes.reserve(estimate);
  // Each message is built in a guarded scratch buffer with ample room (kScratchFactor times the estimate; the
  // record shapes svcplane sends measured at most 0.23 of it) and copied out by the size libnftnl actually wrote:
  // the estimate only sizes buffers, and a write past the scratch buffer faults on its guard page instead of
  // corrupting memory.
  constexpr size_t kScratchFactor = 8;
  constexpr size_t kMinScratch = 1 << 20;
  GuardedBuffer& scratch = ThreadScratch();
  size_t used = 0;  // the most of it any message took: zeroed again after each
  auto room = [&](size_t estimated) { return reinterpret_cast<char*>(scratch.Reserve(std::max(kMinScratch, estimated * kScratchFactor))); };
  auto take = [&](const nlmsghdr* nlh) {
    const size_t len = NLMSG_ALIGN(nlh->nlmsg_len);
    // Cannot happen (a write past size() faults on the guard page first); checked so a length can never be trusted.
    if (len > scratch.size()) throw SysError(EOVERFLOW, "encoding: a message longer than its buffer");
    const auto* p = reinterpret_cast<const uint8_t*>(nlh);
    out.bytes.insert(out.bytes.end(), p, p + len);
    std::memset(scratch.data(), 0, len);  // zero again: libnftnl leaves padding bytes unwritten
    used = std::max(used, len);
  };
  // A large record leaves its pages with this thread: hand them back beyond the first MiB.
  struct TrimAfter {
    GuardedBuffer& s;
    size_t& used;
    ~TrimAfter() {
      // A refused record stops before libnftnl builds its payload: only its header may be left to clear.
      if (std::uncaught_exceptions() > 0 && s.data()) std::memset(s.data(), 0, std::min<size_t>(s.size(), 4096));
      if (used > kMinScratch) s.Trim(kMinScratch);
    }
  } trim{scratch, used};

  uint32_t seq = firstSeq;
  take(nftnl_batch_begin(room(64), seq++));
  for (size_t i = 0; i < records.size(); i++) {
    const Record& r = records[i];
    uint16_t flags = r.nlflags;
    // Only the last record asks for an ack: nf_tables processes the batch inside sendmsg() and queues every
    // reply before returning, so that ack (or its error) is the end marker; errors come back unasked. One
    // ack per message would overflow the receive buffer on a 200k-message sync.
    if (i + 1 == records.size()) flags |= NLM_F_ACK;
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(room(RoomFor(r)), MessageType(r), r.family, flags, seq);
    out.lastSeq = seq++;
    BuildPayload(nlh, r, i);
    take(nlh);
  }
  // Without END the kernel processes every message, reports what it refuses, then aborts: nothing is committed
  // (nfnetlink_rcv_batch; what `nft --check` relies on).
  if (commit) take(nftnl_batch_end(room(64), seq++));
  out.messages = static_cast<uint32_t>(records.size() + (commit ? 2 : 1));
  return out;
}

CommitOutcome SendBatch(NetlinkSocket& sock, const EncodedBatch& batch, const std::vector<Record>* records) {
  CommitOutcome out;
  out.bytes = batch.bytes.size();
  out.messages = batch.messages;
  auto t0 = std::chrono::steady_clock::now();
  sock.EnsureSendBuffer(batch.bytes.size());

  // One sendmsg: the kernel sees BEGIN..END as one skb. The iovec pages only bound each piece's size.
  constexpr size_t kPage = 4u << 20;
  std::vector<iovec> iov;
  for (size_t off = 0; off < batch.bytes.size(); off += kPage) {
    iov.push_back(iovec{const_cast<uint8_t*>(batch.bytes.data()) + off, std::min(kPage, batch.bytes.size() - off)});
  }
  sockaddr_nl nladdr{};
  nladdr.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &nladdr;
  msg.msg_namelen = sizeof(nladdr);
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  ExchangeInProgress exchange(sock);
  ssize_t sent;
  do {
    sent = sendmsg(sock.fd(), &msg, 0);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    int err = errno;
    exchange.Done();  // nothing went out
    throw SysError(err, "sending the nftables batch (" + std::to_string(batch.bytes.size()) + " bytes): " + ErrnoText(err));
  }
  out.sendMicros = MicrosSince(t0);

  auto describe = [&](int64_t index) -> std::string {
    if (index < 0) return "the batch";
    if (records && static_cast<size_t>(index) < records->size()) return DescribeRecord((*records)[index]);
    return "message " + std::to_string(index);
  };

  bool done = false;
  while (!done) {
    int remaining;
    try {
      remaining = static_cast<int>(sock.Receive("the nftables batch"));
    } catch (const SysError& e) {
      if (e.errnum == ENOBUFS) {  // reports were dropped: the batch failed in many places
        out.lostReports = true;
        continue;
      }
      // The final ack may have been among the dropped reports: what arrived says the batch was refused. The socket
      // is reopened (exchange), so nothing of this batch is left for the next exchange to read.
      if (e.errnum == ETIMEDOUT && (!out.errors.empty() || out.lostReports)) break;
      throw;
    }
    for (auto* nlh = reinterpret_cast<nlmsghdr*>(sock.RecvBuffer()); NLMSG_OK(nlh, remaining); nlh = NLMSG_NEXT(nlh, remaining)) {
      // Replies to someone else (or to an older request on this socket) are not ours.
      if (nlh->nlmsg_pid != sock.portid() || nlh->nlmsg_seq < batch.firstSeq || nlh->nlmsg_seq > batch.lastSeq + 1) continue;
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      NlAck reply = ParseAck(nlh);
      const uint32_t seq = nlh->nlmsg_seq;
      int64_t index = static_cast<int64_t>(seq) - static_cast<int64_t>(batch.firstSeq) - 1;
      bool batchLevel = index < 0 || seq == batch.lastSeq + 1;
      if (reply.errnum != 0) {
        BatchError e{batchLevel ? -1 : index, reply.errnum, describe(batchLevel ? -1 : index), reply.message};
        if (!batchLevel && reply.badAttrOffset >= 0) {
          if (const nlmsghdr* req = MessageWithSeq(batch, seq))
            LocateBadAttr(reinterpret_cast<const uint8_t*>(req), req->nlmsg_len, static_cast<uint32_t>(reply.badAttrOffset), e);
        }
        out.errors.push_back(std::move(e));
      }
      // The ack (or error) of the last record ends the batch; an error on BEGIN means it was refused whole.
      if (seq == batch.lastSeq || (batchLevel && reply.errnum != 0)) done = true;
    }
  }
  if (done) exchange.Done();
  std::sort(out.errors.begin(), out.errors.end(), [](const BatchError& a, const BatchError& b) { return a.index < b.index; });
  if (out.errors.empty() && out.lostReports)
    out.errors.push_back(BatchError{-1, ENOBUFS, "the batch", "error reports overflowed the receive buffer"});
  out.totalMicros = MicrosSince(t0);
  return out;
}

}  // namespace svcplane
