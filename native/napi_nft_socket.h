// N-API class NftSocket: an nf_tables netlink socket (optionally in another network namespace) committing and
// checking record-stream batches (nft_commit.h), reading tables back (nft_dump.h) and the ruleset generation,
// each exchange off the JS thread.
#pragma once

#include <napi.h>

namespace svcplane {

Napi::Function InitNftSocket(Napi::Env env);

}  // namespace svcplane
