// Helpers shared by the addon's N-API surface: errors with code/errno, the reply-timeout option, and the workers
// that run blocking work off the JS thread and settle a promise.
#pragma once

#include <napi.h>

#include <string>

#include "errors.h"

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

// Base for workers that settle a promise; subclasses fill a result in Execute and build JS values in Settle.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  // Queues the worker (it deletes itself once settled) and returns its promise.
  Napi::Value Start() {
    Napi::Promise p = Promise();
    Queue();
    return p;
  }

 protected:
  void Fail(const std::string& message, int errnum) {
    failMessage_ = message;
    failErrno_ = errnum;
    failed_ = true;
  }
  void Fail(const SysError& e) { Fail(e.what(), e.errnum); }
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
