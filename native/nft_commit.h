// One nftables transaction: records -> one NFNL batch (BEGIN, one message per record, END) -> one sendmsg ->
// every reply read and matched to the record that caused it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "netlink_socket.h"
#include "nft_records.h"

namespace svcplane {

struct EncodedBatch {
  std::vector<uint8_t> bytes;  // netlink messages, back to back
  uint32_t firstSeq = 0;       // BEGIN's sequence number; record i has firstSeq + 1 + i
  uint32_t lastSeq = 0;        // the last record's sequence number: the only one sent with NLM_F_ACK
  uint32_t messages = 0;
};

struct BatchError {
  BatchError(int64_t i, int err, std::string obj, std::string ack)
      : index(i), errnum(err), object(std::move(obj)), extack(std::move(ack)) {}
  int64_t index;  // record index, -1 for the batch itself (BEGIN/END)
  int errnum;
  std::string object;      // DescribeRecord of the record at fault
  std::string extack;      // the kernel's extended-ack message, if any
  int attribute = -1;      // the top-level attribute the kernel blamed (NLMSGERR_ATTR_OFFS), if it named one
  int expression = -1;     // for a rule: the index of the expression it blamed...
  std::string expressionName;  // ...and that expression's name ("lookup")
};

struct CommitOutcome {
  std::vector<BatchError> errors;  // empty on success
  bool lostReports = false;        // ENOBUFS: the kernel dropped some error reports
  uint64_t sendMicros = 0;         // time inside sendmsg(): nf_tables processes the batch synchronously there
  uint64_t totalMicros = 0;
  size_t bytes = 0;
  uint32_t messages = 0;
};

// Throws RecordFormatError / SysError for records libnftnl refuses (before anything is sent). commit=false
// leaves out the batch's END: the kernel then checks every message and aborts, committing nothing.
EncodedBatch EncodeBatch(const std::vector<Record>& records, uint32_t firstSeq, bool commit = true);

// Sends an encoded batch and reads its replies. `records` (may be null) names the objects in errors.
CommitOutcome SendBatch(NetlinkSocket& sock, const EncodedBatch& batch, const std::vector<Record>* records);

}  // namespace svcplane
