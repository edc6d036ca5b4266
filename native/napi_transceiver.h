// N-API class NetlinkTransceiver: a generic/route/netfilter netlink socket (optionally in another network
// namespace) doing pipelined request/ack exchanges (nl_transact.h) off the JS thread.
#pragma once

#include <napi.h>

namespace svcplane {

Napi::Function InitNetlinkTransceiver(Napi::Env env);

}  // namespace svcplane
