#include "napi_nft_socket.h"

#include <linux/netlink.h>
#include <malloc.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "napi_util.h"
#include "netlink_socket.h"
#include "nft_commit.h"
#include "nft_dump.h"
#include "nft_records.h"
#include "socket_registry.h"

namespace svcplane {
namespace {

// One refused record as JS sees it (BatchErrorInfo in index.d.ts).
Napi::Object BatchErrorObject(Napi::Env env, const BatchError& be) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", Napi::Number::New(env, static_cast<double>(be.index)));
  o.Set("errno", Napi::Number::New(env, be.errnum));
  o.Set("code", Napi::String::New(env, ErrnoName(be.errnum)));
  o.Set("object", Napi::String::New(env, be.object));
  o.Set("kernelMessage", Napi::String::New(env, be.extack));
  if (be.attribute >= 0) o.Set("attribute", Napi::Number::New(env, be.attribute));
  if (be.expression >= 0) {
    Napi::Object x = Napi::Object::New(env);
    x.Set("index", Napi::Number::New(env, be.expression));
    x.Set("name", Napi::String::New(env, be.expressionName));
    o.Set("expression", x);
  }
  return o;
}

// What a worker does with its records: commit them, or check them in a batch that is never committed (the
// kernel's verdict on each record; resolves with the refusals instead of rejecting).
enum class BatchMode { Commit, Check };

class CommitWorker : public PromiseWorker {
 public:
  CommitWorker(Napi::Env env, std::shared_ptr<NetlinkSocket> sock, Napi::Buffer<uint8_t> buf, BatchMode mode)
      : PromiseWorker(env), sock_(std::move(sock)), data_(buf.Data()), len_(buf.Length()), mode_(mode) {
    ref_ = Napi::Persistent(buf);  // keeps the bytes alive while Execute reads them
  }

 protected:
  void Execute() override {
    try {
      NetlinkSocket::Lease lease(*sock_);
      auto t0 = std::chrono::steady_clock::now();
      records_ = ParseRecords(data_, len_);
      operations_ = records_.size();
      if (records_.empty()) return;
      {
        EncodedBatch batch = EncodeBatch(records_, sock_->NextSeq(static_cast<uint32_t>(records_.size() + 2)), mode_ == BatchMode::Commit);
        encodeMicros_ = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
        outcome_ = SendBatch(*sock_, batch, &records_);
      }
      // A full sync's batch and libnftnl objects are tens of MB allocated on this worker thread's malloc arena;
      // glibc keeps freed arena memory unless told, and the agent would carry it as RSS until exit.
      if (len_ > (1u << 20)) {
        std::vector<Record>().swap(records_);
        malloc_trim(0);
      }
    } catch (const SysError& e) {
      Fail(e);
    } catch (const RecordFormatError& e) {
      Fail(e.what(), EINVAL);
    }
  }

  void Settle(Napi::Env env) override {
    if (mode_ == BatchMode::Check) {
      Napi::Array all = Napi::Array::New(env);
      for (size_t i = 0; i < outcome_.errors.size(); i++) all.Set(static_cast<uint32_t>(i), BatchErrorObject(env, outcome_.errors[i]));
      Napi::Object r = Napi::Object::New(env);
      r.Set("errors", all);
      r.Set("lostReports", Napi::Boolean::New(env, outcome_.lostReports));
      deferred_.Resolve(r);
      return;
    }
    if (!outcome_.errors.empty()) {
      const BatchError& first = outcome_.errors.front();
      std::string where = first.expression >= 0
          ? ", expression #" + std::to_string(first.expression) + " (" + first.expressionName + ")" : "";
      std::string msg = "nftables transaction rejected, nothing applied: " + first.object +
                        (first.index >= 0 ? " (operation #" + std::to_string(first.index) + ")" : "") + where + ": " +
                        ErrnoText(first.errnum) + " (" + ErrnoName(first.errnum) + ")" +
                        (first.extack.empty() ? "" : " - kernel says: " + first.extack);
      if (outcome_.errors.size() > 1) msg += " [+" + std::to_string(outcome_.errors.size() - 1) + " more]";
      Napi::Error e = MakeError(env, msg, first.errnum);
      e.Set("index", Napi::Number::New(env, static_cast<double>(first.index)));
      e.Set("object", Napi::String::New(env, first.object));
      if (!first.extack.empty()) e.Set("kernelMessage", Napi::String::New(env, first.extack));
      Napi::Object firstInfo = BatchErrorObject(env, first);
      if (firstInfo.Has("expression")) e.Set("expression", firstInfo.Get("expression"));
      Napi::Array all = Napi::Array::New(env);
      for (size_t i = 0; i < outcome_.errors.size() && i < 100; i++) all.Set(static_cast<uint32_t>(i), BatchErrorObject(env, outcome_.errors[i]));
      e.Set("errors", all);
      deferred_.Reject(e.Value());
      return;
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("operations", Napi::Number::New(env, static_cast<double>(operations_)));
    r.Set("messages", Napi::Number::New(env, outcome_.messages));
    r.Set("bytes", Napi::Number::New(env, static_cast<double>(outcome_.bytes)));
    r.Set("kernelMicros", Napi::Number::New(env, static_cast<double>(outcome_.sendMicros)));
    r.Set("totalMicros", Napi::Number::New(env, static_cast<double>(outcome_.totalMicros + encodeMicros_)));
    r.Set("encodeMicros", Napi::Number::New(env, static_cast<double>(encodeMicros_)));
    deferred_.Resolve(r);
  }

 private:
  std::shared_ptr<NetlinkSocket> sock_;
  Napi::Reference<Napi::Buffer<uint8_t>> ref_;
  const uint8_t* data_;
  size_t len_;
  BatchMode mode_;
  std::vector<Record> records_;
  size_t operations_ = 0;
  CommitOutcome outcome_;
  int64_t encodeMicros_ = 0;
};

class DumpWorker : public PromiseWorker {
 public:
  DumpWorker(Napi::Env env, std::shared_ptr<NetlinkSocket> sock, uint8_t family, std::string table)
      : PromiseWorker(env), sock_(std::move(sock)), family_(family), table_(std::move(table)) {}

 protected:
  void Execute() override {
    try {
      NetlinkSocket::Lease lease(*sock_);
      result_ = DumpTable(*sock_, family_, table_);
    } catch (const SysError& e) {
      Fail(e);
    }
  }
  void Settle(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("exists", Napi::Boolean::New(env, result_.exists));
    r.Set("generation", Napi::Number::New(env, result_.generation));
    // Hand the bytes to JS without a copy: the Buffer's finalizer frees the vector.
    auto* owned = new std::vector<uint8_t>(std::move(result_.records));
    r.Set("records", Napi::Buffer<uint8_t>::New(env, owned->data(), owned->size(),
                                                [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, owned));
    deferred_.Resolve(r);
  }

 private:
  std::shared_ptr<NetlinkSocket> sock_;
  uint8_t family_;
  std::string table_;
  DumpResult result_;
};

class GenerationWorker : public PromiseWorker {
 public:
  GenerationWorker(Napi::Env env, std::shared_ptr<NetlinkSocket> sock) : PromiseWorker(env), sock_(std::move(sock)) {}

 protected:
  void Execute() override {
    try {
      NetlinkSocket::Lease lease(*sock_);
      gen_ = GetGeneration(*sock_);
    } catch (const SysError& e) {
      Fail(e);
    }
  }
  void Settle(Napi::Env env) override { deferred_.Resolve(Napi::Number::New(env, gen_)); }

 private:
  std::shared_ptr<NetlinkSocket> sock_;
  uint32_t gen_ = 0;
};

class NftSocket : public Napi::ObjectWrap<NftSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NftSocket",
                       {InstanceMethod("commit", &NftSocket::Commit), InstanceMethod("dump", &NftSocket::Dump),
                        InstanceMethod("check", &NftSocket::Check), InstanceMethod("generation", &NftSocket::Generation),
                        InstanceMethod("close", &NftSocket::Close)});
  }

  explicit NftSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftSocket>(info) {
    std::string netns;
    int replyTimeoutMs = 0;
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Object o = info[0].As<Napi::Object>();
      if (o.Get("netns").IsString()) netns = o.Get("netns").As<Napi::String>();
      replyTimeoutMs = ReplyTimeoutOption(o);
    }
    try {
      sock_.Set(std::make_shared<NetlinkSocket>(NETLINK_NETFILTER, netns, replyTimeoutMs));
    } catch (const SysError& e) {
      MakeError(info.Env(), e.what(), e.errnum).ThrowAsJavaScriptException();
      return;
    }
  }

 private:
  std::shared_ptr<NetlinkSocket> Live(Napi::Env env) {
    auto sock = sock_.Live();
    if (!sock) MakeError(env, "NftSocket is closed", EBADF).ThrowAsJavaScriptException();
    return sock;
  }

  // commit(records) -> CommitResult; rejects with the refused records (NftCommitError).
  Napi::Value Commit(const Napi::CallbackInfo& info) { return StartBatch(info, BatchMode::Commit, "commit(records: Buffer)"); }

  // check(records) -> { errors, lostReports }: the same batch without its END, so the kernel checks every record
  // and commits nothing (how svcplane probes what a kernel accepts).
  Napi::Value Check(const Napi::CallbackInfo& info) { return StartBatch(info, BatchMode::Check, "check(records: Buffer)"); }

  Napi::Value StartBatch(const Napi::CallbackInfo& info, BatchMode mode, const char* usage) {
    Napi::Env env = info.Env();
    if (!info[0].IsBuffer()) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto sock = Live(env);
    if (!sock) return env.Undefined();
    return (new CommitWorker(env, sock, info[0].As<Napi::Buffer<uint8_t>>(), mode))->Start();
  }

  Napi::Value Dump(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsString()) {
      Napi::TypeError::New(env, "dump(family: number, table: string)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto sock = Live(env);
    if (!sock) return env.Undefined();
    return (new DumpWorker(env, sock, static_cast<uint8_t>(info[0].As<Napi::Number>().Uint32Value()), info[1].As<Napi::String>()))->Start();
  }

  Napi::Value Generation(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto sock = Live(env);
    if (!sock) return env.Undefined();
    return (new GenerationWorker(env, sock))->Start();
  }

  // Never frees the socket under a running exchange: it is closed when that exchange ends (NetlinkSocket::Close),
  // and exchanges queued meanwhile reject with EBADF.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    sock_.Close();
    return info.Env().Undefined();
  }

  RegisteredSocket sock_;
};

}  // namespace

Napi::Function InitNftSocket(Napi::Env env) { return NftSocket::Init(env); }

}  // namespace svcplane
