#include "napi_transceiver.h"

#include <cstring>

#include <linux/netlink.h>

#include <memory>
#include <string>
#include <vector>

#include "napi_util.h"
#include "netlink_socket.h"
#include "nl_transact.h"
#include "socket_registry.h"

namespace svcplane {

namespace {

// The exchange's counters, as every transact result carries them.
void SetStats(Napi::Env env, Napi::Object& res, const NlTransactStats& stats) {
  res.Set("sends", Napi::Number::New(env, stats.sends));
  res.Set("bytes", Napi::Number::New(env, static_cast<double>(stats.bytes)));
  res.Set("kernelMicros", Napi::Number::New(env, static_cast<double>(stats.kernelMicros)));
}

class TransactWorker : public PromiseWorker {
 public:
  TransactWorker(Napi::Env env, std::shared_ptr<NetlinkSocket> sock, std::vector<std::vector<uint8_t>> requests)
      : PromiseWorker(env), sock_(std::move(sock)), requests_(std::move(requests)) {}

 protected:
  void Execute() override {
    try {
      results_ = NlTransact(*sock_, requests_, stats_);
    } catch (const SysError& e) {
      Fail(e);
    }
  }

  void Settle(Napi::Env env) override {
    Napi::Array list = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); i++) {
      NlResult& r = results_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("errno", Napi::Number::New(env, r.err));
      if (r.err) o.Set("code", Napi::String::New(env, ErrnoName(r.err)));
      if (!r.kernelMessage.empty()) o.Set("kernelMessage", Napi::String::New(env, r.kernelMessage));
      Napi::Array replies = Napi::Array::New(env, r.replies.size());
      for (size_t j = 0; j < r.replies.size(); j++) {
        auto* owned = new std::vector<uint8_t>(std::move(r.replies[j]));
        replies.Set(static_cast<uint32_t>(j), Napi::Buffer<uint8_t>::New(env, owned->data(), owned->size(),
                                                                          [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, owned));
      }
      o.Set("replies", replies);
      list.Set(static_cast<uint32_t>(i), o);
    }
    Napi::Object res = Napi::Object::New(env);
    res.Set("results", list);
    SetStats(env, res, stats_);
    deferred_.Resolve(res);
  }

 private:
  std::shared_ptr<NetlinkSocket> sock_;
  std::vector<std::vector<uint8_t>> requests_;
  std::vector<NlResult> results_;
  NlTransactStats stats_;
};

// The packed form: requests arrive as one buffer of consecutive messages and results go back compactly (only the
// refused requests and those with replies are materialised), so a 10k-Service sync costs one N-API crossing each
// way instead of one object per request.
class PackedTransactWorker : public PromiseWorker {
 public:
  PackedTransactWorker(Napi::Env env, std::shared_ptr<NetlinkSocket> sock, std::vector<std::vector<uint8_t>> requests, bool ackLastOnly)
      : PromiseWorker(env), sock_(std::move(sock)), requests_(std::move(requests)), ackLastOnly_(ackLastOnly) {}

 protected:
  void Execute() override {
    try {
      results_ = NlTransact(*sock_, requests_, stats_, ackLastOnly_);
    } catch (const SysError& e) {
      Fail(e);
    }
  }

  void Settle(Napi::Env env) override {
    Napi::Array failures = Napi::Array::New(env);
    Napi::Array replies = Napi::Array::New(env);
    uint32_t nf = 0, nr = 0;
    for (size_t i = 0; i < results_.size(); i++) {
      NlResult& r = results_[i];
      if (r.err) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("index", Napi::Number::New(env, static_cast<double>(i)));
        o.Set("errno", Napi::Number::New(env, r.err));
        o.Set("code", Napi::String::New(env, ErrnoName(r.err)));
        if (!r.kernelMessage.empty()) o.Set("kernelMessage", Napi::String::New(env, r.kernelMessage));
        failures.Set(nf++, o);
      }
      if (!r.replies.empty()) {
        size_t total = 0;
        for (auto& m : r.replies) total += m.size();
        Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::New(env, total);
        size_t off = 0;
        for (auto& m : r.replies) {
          memcpy(data.Data() + off, m.data(), m.size());
          off += m.size();
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("index", Napi::Number::New(env, static_cast<double>(i)));
        o.Set("data", data);
        replies.Set(nr++, o);
      }
    }
    Napi::Object res = Napi::Object::New(env);
    res.Set("count", Napi::Number::New(env, static_cast<double>(results_.size())));
    res.Set("failures", failures);
    res.Set("replies", replies);
    SetStats(env, res, stats_);
    deferred_.Resolve(res);
  }

 private:
  std::shared_ptr<NetlinkSocket> sock_;
  std::vector<std::vector<uint8_t>> requests_;
  std::vector<NlResult> results_;
  NlTransactStats stats_;
  bool ackLastOnly_;
};

class NetlinkTransceiver : public Napi::ObjectWrap<NetlinkTransceiver> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NetlinkTransceiver",
                       {InstanceMethod("transact", &NetlinkTransceiver::Transact),
                        InstanceMethod("transactPacked", &NetlinkTransceiver::TransactPacked),
                        InstanceMethod("close", &NetlinkTransceiver::Close)});
  }

  explicit NetlinkTransceiver(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkTransceiver>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "new NetlinkTransceiver({ bus: 'generic' | 'route' | 'netfilter', netns? })").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    std::string bus = o.Get("bus").IsString() ? o.Get("bus").As<Napi::String>().Utf8Value() : "";
    int proto = bus == "generic" ? NETLINK_GENERIC : bus == "route" ? NETLINK_ROUTE : bus == "netfilter" ? NETLINK_NETFILTER : -1;
    if (proto < 0) {
      Napi::TypeError::New(env, "bus must be 'generic', 'route' or 'netfilter'").ThrowAsJavaScriptException();
      return;
    }
    std::string netns = o.Get("netns").IsString() ? o.Get("netns").As<Napi::String>().Utf8Value() : "";
    try {
      sock_.Set(std::make_shared<NetlinkSocket>(proto, netns, ReplyTimeoutOption(o)));
    } catch (const SysError& e) {
      MakeError(env, e.what(), e.errnum).ThrowAsJavaScriptException();
      return;
    }
  }

 private:
  // transact(requests: Buffer[]) -> Promise<{ results: { errno, code?, kernelMessage?, replies: Buffer[] }[], ... }>
  Napi::Value Transact(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) {
      Napi::TypeError::New(env, "transact(requests: Buffer[])").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto sock = Live(env);
    if (!sock) return env.Undefined();
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<std::vector<uint8_t>> requests;
    requests.reserve(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr.Get(i);
      if (!v.IsBuffer()) {
        Napi::TypeError::New(env, "transact: request " + std::to_string(i) + " is not a Buffer").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      auto b = v.As<Napi::Buffer<uint8_t>>();
      requests.emplace_back(b.Data(), b.Data() + b.Length());  // copied: JS may reuse its buffers meanwhile
    }
    return (new TransactWorker(env, sock, std::move(requests)))->Start();
  }

  // transactPacked(messages: Buffer, { ackLastOnly? }) -> Promise<{ count, failures, replies, sends, bytes, kernelMicros }>
  Napi::Value TransactPacked(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsBuffer()) {
      Napi::TypeError::New(env, "transactPacked(messages: Buffer)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto sock = Live(env);
    if (!sock) return env.Undefined();
    auto b = info[0].As<Napi::Buffer<uint8_t>>();
    std::vector<std::vector<uint8_t>> requests;
    size_t off = 0;
    while (off < b.Length()) {
      if (b.Length() - off < sizeof(nlmsghdr)) {
        MakeError(env, "transactPacked: trailing bytes shorter than a netlink header at offset " + std::to_string(off), EINVAL).ThrowAsJavaScriptException();
        return env.Undefined();
      }
      uint32_t len;
      memcpy(&len, b.Data() + off, sizeof(len));
      if (len < sizeof(nlmsghdr) || len > b.Length() - off) {
        MakeError(env, "transactPacked: message " + std::to_string(requests.size()) + " has a bad nlmsg_len", EINVAL).ThrowAsJavaScriptException();
        return env.Undefined();
      }
      requests.emplace_back(b.Data() + off, b.Data() + off + len);  // copied: JS may reuse its buffer meanwhile
      off += NLMSG_ALIGN(len);
    }
    bool ackLastOnly = false;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Value v = info[1].As<Napi::Object>().Get("ackLastOnly");
      ackLastOnly = v.IsBoolean() && v.As<Napi::Boolean>().Value();
    }
    return (new PackedTransactWorker(env, sock, std::move(requests), ackLastOnly))->Start();
  }

  // As NftSocket's: never frees the socket under a running exchange.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    sock_.Close();
    return info.Env().Undefined();
  }

  std::shared_ptr<NetlinkSocket> Live(Napi::Env env) {
    auto sock = sock_.Live();
    if (!sock) MakeError(env, "NetlinkTransceiver is closed", EBADF).ThrowAsJavaScriptException();
    return sock;
  }

  RegisteredSocket sock_;
};

}  // namespace

Napi::Function InitNetlinkTransceiver(Napi::Env env) { return NetlinkTransceiver::Init(env); }

}  // namespace svcplane
