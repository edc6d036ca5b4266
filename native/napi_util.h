// Helpers shared by the addon's N-API classes: errors with code/errno, promise-settling workers, and the registry
// of open sockets the environment cleanup hook closes.
#pragma once

#include <napi.h>

#include <memory>
#include <string>

#include "netlink_socket.h"

namespace svcplane {

inline Napi::Error MakeError(Napi::Env env, const std::string& message, int errnum) {
  Napi::Error e = Napi::Error::New(env, message);
  if (errnum) {
    e.Set("code", Napi::String::New(env, ErrnoName(errnum)));
    e.Set("errno", Napi::Number::New(env, errnum));
  }
  return e;
}

// The `replyTimeoutMs` constructor option (0: the default), for tests that need a missing reply to fail quickly.
inline int ReplyTimeoutOption(const Napi::Object& o) {
  Napi::Value v = o.Get("replyTimeoutMs");
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : 0;
}

// Sockets still open when the environment is torn down are closed by the cleanup hook.
void RegisterSocket(std::shared_ptr<NetlinkSocket>* s);
void UnregisterSocket(std::shared_ptr<NetlinkSocket>* s);
void CloseAllSockets();

// Base for workers that settle a promise; subclasses fill a result in Execute and build JS values in Settle.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Fail(const std::string& message, int errnum) {
    failMessage_ = message;
    failErrno_ = errnum;
    failed_ = true;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failed_) {
      deferred_.Reject(MakeError(env, failMessage_, failErrno_).Value());
      return;
    }
    Settle(env);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  virtual void Settle(Napi::Env env) = 0;

  Napi::Promise::Deferred deferred_;
  bool failed_ = false;
  std::string failMessage_;
  int failErrno_ = 0;
};

}  // namespace svcplane
