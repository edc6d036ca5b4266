// The addon's module: what it exports (typed in native/index.d.ts) and the N-API surface of its free functions.
// The classes are in napi_nft_socket.cc (NftSocket), napi_transceiver.cc (NetlinkTransceiver) and napi_ebpf.cc (EbpfObject). Blocking work
// runs in a PromiseWorker (napi_util.h) whose Execute() touches no JS; errors reach JS with `code` ("ENOENT"),
// numeric `errno` and a message naming the operation and its object.
#include <napi.h>

#include <malloc.h>

#include <string>

#include "abstract_socket.h"
#include "napi_ebpf.h"
#include "napi_nft_socket.h"
#include "napi_transceiver.h"
#include "napi_util.h"
#include "netns.h"
#include "socket_registry.h"
#include "sysctl.h"

namespace svcplane {
namespace {

// Reads or writes a net.* sysctl of a network namespace off the JS thread (the setns dance blocks briefly).
class SysctlWorker : public PromiseWorker {
 public:
  SysctlWorker(Napi::Env env, std::string name, std::string netns, bool write, std::string value)
      : PromiseWorker(env), name_(std::move(name)), netns_(std::move(netns)), write_(write), value_(std::move(value)) {}

  void Execute() override {
    try {
      if (write_) WriteNetSysctl(name_, value_, netns_);
      else value_ = ReadNetSysctl(name_, netns_);
    } catch (const SysError& e) {
      Fail(e);
    }
  }
  void Settle(Napi::Env env) override {
    deferred_.Resolve(write_ ? env.Undefined() : Napi::String::New(env, value_));
  }

 private:
  std::string name_, netns_;
  bool write_;
  std::string value_;
};

// netSysctl(name, netns?: string, value?: string): Promise<string | undefined>
Napi::Value NetSysctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "netSysctl(name, netns?, value?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string netns = info.Length() > 1 && info[1].IsString() ? std::string(info[1].As<Napi::String>()) : "";
  bool write = info.Length() > 2 && info[2].IsString();
  std::string value = write ? std::string(info[2].As<Napi::String>()) : "";
  return (new SysctlWorker(env, info[0].As<Napi::String>(), netns, write, value))->Start();
}

// The (name, netns?) arguments of listenAbstract and connectAbstract.
struct AbstractArgs {
  std::string name, netns;
};

AbstractArgs AbstractArgsOf(const Napi::CallbackInfo& info, const char* usage) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), usage);
  AbstractArgs a;
  a.name = info[0].As<Napi::String>();
  if (info.Length() > 1 && info[1].IsString()) a.netns = info[1].As<Napi::String>();
  return a;
}

// listenAbstract(name, netns?) -> fd (owned by JS from here). Synchronous: a socket() and a bind().
Napi::Value ListenAbstractJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AbstractArgs a = AbstractArgsOf(info, "listenAbstract(name: string, netns?: string)");
  try {
    Fd fd = ListenAbstract(a.name, a.netns);
    return Napi::Number::New(env, fd.Release());
  } catch (const SysError& e) {
    throw MakeError(env, e.what(), e.errnum);
  }
}

// connectAbstract(name, netns?) -> { fd, pid, uid } | null (see index.d.ts). Synchronous: connect completes at once.
Napi::Value ConnectAbstractJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AbstractArgs a = AbstractArgsOf(info, "connectAbstract(name: string, netns?: string)");
  try {
    AbstractPeer peer = ConnectAbstract(a.name, a.netns);
    if (peer.state == AbstractPeer::State::Absent) return env.Null();
    Napi::Object out = Napi::Object::New(env);
    if (peer.state == AbstractPeer::State::Busy) {
      out.Set("fd", Napi::Number::New(env, -1));
      out.Set("pid", Napi::Number::New(env, 0));
      out.Set("uid", Napi::Number::New(env, -1));
      return out;
    }
    out.Set("fd", Napi::Number::New(env, peer.fd.get()));
    out.Set("pid", Napi::Number::New(env, peer.pid));
    out.Set("uid", Napi::Number::New(env, peer.uid));
    peer.fd.Release();  // handed to JS
    return out;
  } catch (const SysError& e) {
    throw MakeError(env, e.what(), e.errnum);
  }
}

// newNetns() -> fd (owned by JS from here): a new, empty network namespace that lives as long as the fd.
Napi::Value NewNetnsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    return Napi::Number::New(env, NewNetns().Release());
  } catch (const SysError& e) {
    throw MakeError(env, e.what(), e.errnum);
  }
}

// A version as a string literal: gyp passes -DNAME=1.2.4 (quotes would not survive make's shell).
#define SVCPLANE_STRINGIFY_(x) #x
#define SVCPLANE_STRINGIFY(x) SVCPLANE_STRINGIFY_(x)

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // glibc raises its mmap threshold to the size of each large mmapped block freed (a full sync's buffers: MBs) and
  // its trim threshold to twice that, for good; every arena (one per thread: the event loop, libuv's workers, V8's)
  // then keeps that much freed memory at its top. After 200k EndpointSlice updates at 10k Services, eight thread
  // arenas held ~80 MB of RSS with ~1 MB in use. Fixed thresholds (glibc's defaults) keep the trimming on free.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  exports.Set("NftSocket", InitNftSocket(env));
  exports.Set("NetlinkTransceiver", InitNetlinkTransceiver(env));
  exports.Set("EbpfObject", InitEbpfObject(env));
  InitEbpfFunctions(env, exports);
  exports.Set("netSysctl", Napi::Function::New(env, NetSysctl, "netSysctl"));
  // The library versions the addon was built against (pkg-config at build time: neither library reports its own).
  Napi::Object libraries = Napi::Object::New(env);
  libraries.Set("libnftnl", SVCPLANE_STRINGIFY(SVCPLANE_LIBNFTNL_VERSION));
  libraries.Set("libmnl", SVCPLANE_STRINGIFY(SVCPLANE_LIBMNL_VERSION));
  libraries.Set("libbpf", SVCPLANE_STRINGIFY(SVCPLANE_LIBBPF_VERSION));
  exports.Set("libraries", libraries);
  exports.Set("listenAbstract", Napi::Function::New(env, ListenAbstractJs, "listenAbstract"));
  exports.Set("newNetns", Napi::Function::New(env, NewNetnsJs, "newNetns"));
  exports.Set("connectAbstract", Napi::Function::New(env, ConnectAbstractJs, "connectAbstract"));
  // Sockets still open when the environment is torn down (exit, a worker thread's end) are closed.
  env.AddCleanupHook([]() { RegisteredSocket::CloseAll(); });
  return exports;
}

}  // namespace
}  // namespace svcplane

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return svcplane::Init(env, exports); }

NODE_API_MODULE(svcplane_native, InitAddon)
