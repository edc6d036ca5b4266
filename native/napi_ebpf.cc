#include "napi_ebpf.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ebpf_maps.h"
#include "ebpf_object.h"
#include "napi_util.h"

namespace svcplane {
namespace {

// The loaded object and what JS may do with its maps. One operation at a time (the mutex): the dataplane never
// overlaps them, and a worker must not see the object closed under it.
struct LoadedObject {
  std::mutex mu;
  std::unique_ptr<EbpfObject> obj;
  std::map<std::string, EbpfMapReport> maps;

  const EbpfMapReport& Map(const std::string& name) {
    auto it = maps.find(name);
    if (it == maps.end()) throw SysError(ENOENT, "BPF map " + name + ": not in the loaded object");
    return it->second;
  }
};

Napi::Object MapReportObject(Napi::Env env, const EbpfMapReport& m) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", m.name);
  o.Set("id", m.id);
  o.Set("type", m.type);
  o.Set("keySize", m.keySize);
  o.Set("valueSize", m.valueSize);
  o.Set("maxEntries", m.maxEntries);
  o.Set("flags", m.flags);
  o.Set("memlock", Napi::Number::New(env, static_cast<double>(m.memlock)));
  return o;
}

Napi::Object StatsObject(Napi::Env env, const MapOpStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("syscalls", Napi::Number::New(env, static_cast<double>(s.syscalls)));
  o.Set("micros", Napi::Number::New(env, static_cast<double>(s.micros)));
  return o;
}

std::vector<uint8_t> Bytes(const Napi::Value& v, const char* what) {
  if (!v.IsBuffer()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Buffer");
  auto b = v.As<Napi::Buffer<uint8_t>>();
  return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
}

// A worker on the loaded object: Work() runs off the JS thread holding the object's lock; a SysError rejects.
class ObjectWorker : public PromiseWorker {
 public:
  ObjectWorker(Napi::Env env, std::shared_ptr<LoadedObject> lo) : PromiseWorker(env), lo_(std::move(lo)) {}
  void Execute() override {
    try {
      std::lock_guard<std::mutex> g(lo_->mu);
      Work();
    } catch (const SysError& e) {
      Fail(e);
    }
  }

 protected:
  virtual void Work() = 0;
  std::shared_ptr<LoadedObject> lo_;
};

class LoadWorker : public ObjectWorker {
 public:
  LoadWorker(Napi::Env env, std::shared_ptr<LoadedObject> lo, std::string object, std::string mapDir)
      : ObjectWorker(env, std::move(lo)), object_(std::move(object)), mapDir_(std::move(mapDir)) {}
  void Work() override {
    EnsureBpffsDir(mapDir_);
    lo_->obj = std::make_unique<EbpfObject>(object_, mapDir_);
    lo_->maps.clear();
    for (auto& m : lo_->obj->Maps()) lo_->maps[m.name] = m;
  }
  void Settle(Napi::Env env) override {
    Napi::Array a = Napi::Array::New(env);
    uint32_t i = 0;
    for (auto& [name, m] : lo_->maps) a.Set(i++, MapReportObject(env, m));
    deferred_.Resolve(a);
  }

 private:
  std::string object_, mapDir_;
};

class AttachWorker : public ObjectWorker {
 public:
  AttachWorker(Napi::Env env, std::shared_ptr<LoadedObject> lo, std::string cgroup, std::string linkDir)
      : ObjectWorker(env, std::move(lo)), cgroup_(std::move(cgroup)), linkDir_(std::move(linkDir)) {}
  void Work() override {
    if (!lo_->obj) throw SysError(EBADF, "attach: no BPF object loaded");
    links_ = lo_->obj->Attach(cgroup_, linkDir_);
  }
  void Settle(Napi::Env env) override {
    Napi::Array a = Napi::Array::New(env, links_.size());
    for (size_t i = 0; i < links_.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("program", links_[i].program);
      o.Set("linkId", links_[i].linkId);
      o.Set("progId", links_[i].progId);
      o.Set("adopted", links_[i].adopted);
      a.Set(static_cast<uint32_t>(i), o);
    }
    deferred_.Resolve(a);
  }

 private:
  std::string cgroup_, linkDir_;
  std::vector<EbpfLinkReport> links_;
};

// Element operations on the maps, in order, in one trip off the JS thread: update, delete or dump of one map, or
// apply(): every step of a sync (a few maps, image.ts's order) in one worker, so a one-endpoint change costs one
// thread-pool hop instead of one per map (each hop is tens of microseconds, and more when the machine is busy).
// A failing step stops the sequence there; its error names the map and key, and `step` says which one it was.
struct MapStep {
  enum class Op { Update, Delete, Dump } op;
  std::string map;
  std::vector<uint8_t> keys, values;
  uint32_t count = 0;
};

// Runs the steps in order on the loaded object (its lock held by the caller); `done` counts the steps finished.
void RunSteps(LoadedObject& lo, std::vector<MapStep>& steps, bool many, MapOpStats& stats, uint32_t& done) {
  for (MapStep& st : steps) {
    const std::string at = many ? " (step " + std::to_string(done + 1) + " of " + std::to_string(steps.size()) + ")" : "";
    if (!lo.obj) throw SysError(EBADF, "BPF map " + st.map + ": the object is closed");
    const EbpfMapReport& m = lo.Map(st.map);
    int fd = lo.obj->MapFd(st.map);
    if (st.op == MapStep::Op::Dump) {
      st.keys.clear();
      st.values.clear();
      st.count = MapDump(fd, st.map, m.keySize, m.valueSize, st.keys, st.values, stats);
      done++;
      continue;
    }
    if (st.keys.size() % m.keySize)
      throw SysError(EINVAL, "BPF map " + st.map + at + ": keys are not a whole number of " + std::to_string(m.keySize) + "-byte keys");
    st.count = static_cast<uint32_t>(st.keys.size() / m.keySize);
    try {
      if (st.op == MapStep::Op::Delete) {
        MapDelete(fd, st.map, st.keys.data(), st.count, m.keySize, stats);
      } else {
        if (st.values.size() != size_t(st.count) * m.valueSize)
          throw SysError(EINVAL, "BPF map " + st.map + at + ": " + std::to_string(st.count) + " keys but " + std::to_string(st.values.size()) +
                                     " bytes of " + std::to_string(m.valueSize) + "-byte values");
        MapUpdate(fd, st.map, st.keys.data(), st.values.data(), st.count, m.keySize, m.valueSize, stats);
      }
    } catch (const SysError& e) {
      if (!many || std::string(e.what()).find(at) != std::string::npos) throw;
      throw SysError(e.errnum, std::string(e.what()) + at);
    }
    done++;
  }
}

class MapWorker : public ObjectWorker {
 public:
  MapWorker(Napi::Env env, std::shared_ptr<LoadedObject> lo, std::vector<MapStep> steps, bool many)
      : ObjectWorker(env, std::move(lo)), steps_(std::move(steps)), many_(many) {}
  void Work() override { RunSteps(*lo_, steps_, many_, stats_, done_); }
  void Settle(Napi::Env env) override {
    Napi::Object o = StatsObject(env, stats_);
    if (many_) {
      o.Set("steps", done_);
    } else {
      MapStep& st = steps_[0];
      o.Set("count", st.count);
      if (st.op == MapStep::Op::Dump) {
        o.Set("keys", Napi::Buffer<uint8_t>::Copy(env, st.keys.data(), st.keys.size()));
        o.Set("values", Napi::Buffer<uint8_t>::Copy(env, st.values.data(), st.values.size()));
      }
    }
    deferred_.Resolve(o);
  }

 private:
  std::vector<MapStep> steps_;
  bool many_;
  uint32_t done_ = 0;
  MapOpStats stats_;
};

class EbpfObjectJs : public Napi::ObjectWrap<EbpfObjectJs> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "EbpfObject", {
      InstanceMethod<&EbpfObjectJs::Load>("load"),
      InstanceMethod<&EbpfObjectJs::Attach>("attach"),
      InstanceMethod<&EbpfObjectJs::Update>("update"),
      InstanceMethod<&EbpfObjectJs::Delete>("delete"),
      InstanceMethod<&EbpfObjectJs::Dump>("dump"),
      InstanceMethod<&EbpfObjectJs::Apply>("apply"),
      InstanceMethod<&EbpfObjectJs::ApplySync>("applySync"),
      InstanceMethod<&EbpfObjectJs::Maps>("maps"),
      InstanceMethod<&EbpfObjectJs::Close>("close"),
    });
  }
  explicit EbpfObjectJs(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EbpfObjectJs>(info), lo_(std::make_shared<LoadedObject>()) {}

 private:
  std::string Str(const Napi::CallbackInfo& info, size_t i, const char* usage) {
    if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), usage);
    return info[i].As<Napi::String>();
  }
  // load(objectPath, mapDir): Promise<MapInfo[]>
  Napi::Value Load(const Napi::CallbackInfo& info) {
    const char* u = "load(objectPath: string, mapDir: string)";
    return (new LoadWorker(info.Env(), lo_, Str(info, 0, u), Str(info, 1, u)))->Start();
  }
  // attach(cgroupPath, linkDir): Promise<LinkInfo[]>
  Napi::Value Attach(const Napi::CallbackInfo& info) {
    const char* u = "attach(cgroupPath: string, linkDir: string)";
    return (new AttachWorker(info.Env(), lo_, Str(info, 0, u), Str(info, 1, u)))->Start();
  }
  Napi::Value Update(const Napi::CallbackInfo& info) {
    std::string map = Str(info, 0, "update(map: string, keys: Buffer, values: Buffer)");
    return One(info, {MapStep::Op::Update, map, Bytes(info[1], "keys"), Bytes(info[2], "values")});
  }
  Napi::Value Delete(const Napi::CallbackInfo& info) {
    std::string map = Str(info, 0, "delete(map: string, keys: Buffer)");
    return One(info, {MapStep::Op::Delete, map, Bytes(info[1], "keys"), {}});
  }
  Napi::Value Dump(const Napi::CallbackInfo& info) {
    std::string map = Str(info, 0, "dump(map: string)");
    return One(info, {MapStep::Op::Dump, map, {}, {}});
  }
  Napi::Value One(const Napi::CallbackInfo& info, MapStep step) {
    std::vector<MapStep> steps;
    steps.push_back(std::move(step));
    return (new MapWorker(info.Env(), lo_, std::move(steps), false))->Start();
  }
  std::vector<MapStep> Steps(const Napi::CallbackInfo& info, const char* u) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, u);
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<MapStep> steps;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsObject()) throw Napi::TypeError::New(env, u);
      Napi::Object o = v.As<Napi::Object>();
      Napi::Value op = o.Get("op"), map = o.Get("map");
      if (!op.IsString() || !map.IsString()) throw Napi::TypeError::New(env, u);
      std::string ops = op.As<Napi::String>();
      if (ops == "update") steps.push_back({MapStep::Op::Update, map.As<Napi::String>(), Bytes(o.Get("keys"), "keys"), Bytes(o.Get("values"), "values")});
      else if (ops == "delete") steps.push_back({MapStep::Op::Delete, map.As<Napi::String>(), Bytes(o.Get("keys"), "keys"), {}});
      else throw Napi::TypeError::New(env, u);
    }
    return steps;
  }
  // apply(steps: Array<{ op: 'update' | 'delete', map, keys, values? }>): Promise<{ syscalls, micros, steps }>
  Napi::Value Apply(const Napi::CallbackInfo& info) {
    auto steps = Steps(info, "apply(steps: Array<{ op: 'update' | 'delete', map: string, keys: Buffer, values?: Buffer }>)");
    return (new MapWorker(info.Env(), lo_, std::move(steps), true))->Start();
  }
  // applySync(steps): { syscalls, micros, steps } | undefined. The same on the JS thread, for a few elements: a bpf()
  // map write does not sleep, and tens of microseconds of it cost less than one hop to the thread pool (which took
  // milliseconds at p99 on these VMs: waking an idle vCPU). undefined when a worker holds the object: use apply().
  Napi::Value ApplySync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto steps = Steps(info, "applySync(steps: Array<{ op: 'update' | 'delete', map: string, keys: Buffer, values?: Buffer }>)");
    std::unique_lock<std::mutex> g(lo_->mu, std::try_to_lock);
    if (!g.owns_lock()) return env.Undefined();
    MapOpStats stats;
    uint32_t done = 0;
    try {
      RunSteps(*lo_, steps, true, stats, done);
    } catch (const SysError& e) {
      throw MakeError(env, e.what(), e.errnum);
    }
    Napi::Object o = StatsObject(env, stats);
    o.Set("steps", done);
    return o;
  }
  // maps(): MapInfo[] with the kernel's current memlock figure (synchronous: a few fdinfo reads).
  Napi::Value Maps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::lock_guard<std::mutex> g(lo_->mu);
    Napi::Array a = Napi::Array::New(env);
    if (!lo_->obj) return a;
    uint32_t i = 0;
    for (auto& m : lo_->obj->Maps()) a.Set(i++, MapReportObject(env, m));
    return a;
  }
  // close(): closes the object's fds. Pinned maps and links stay (that is what pinning is for).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> g(lo_->mu);
    lo_->obj.reset();
    lo_->maps.clear();
    return info.Env().Undefined();
  }

  std::shared_ptr<LoadedObject> lo_;
};

template <typename F>
Napi::Value Sync(Napi::Env env, F f) {
  try {
    return f();
  } catch (const SysError& e) {
    throw MakeError(env, e.what(), e.errnum);
  }
}

std::string Arg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), usage);
  return info[i].As<Napi::String>();
}

// ebpfPinnedLinks(linkDir): PinnedLink[] (an absent directory: none).
Napi::Value PinnedLinksJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = Arg(info, 0, "ebpfPinnedLinks(linkDir: string)");
  return Sync(env, [&]() -> Napi::Value {
    auto links = ReadPinnedLinks(dir);
    Napi::Array a = Napi::Array::New(env, links.size());
    for (size_t i = 0; i < links.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("pin", links[i].pin);
      o.Set("linkId", links[i].linkId);
      o.Set("progId", links[i].progId);
      o.Set("attachType", links[i].attachType);
      o.Set("cgroupId", Napi::BigInt::New(env, static_cast<uint64_t>(links[i].cgroupId)));
      a.Set(static_cast<uint32_t>(i), o);
    }
    return a;
  });
}

// ebpfDetach(linkDir, root): number of links detached; everything under root unpinned and removed.
Napi::Value DetachJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* u = "ebpfDetach(linkDir: string, root: string)";
  std::string linkDir = Arg(info, 0, u), root = Arg(info, 1, u);
  return Sync(env, [&]() -> Napi::Value { return Napi::Number::New(env, DetachAndUnpin(linkDir, root)); });
}

// cgroupId(path): bigint
Napi::Value CgroupIdJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string p = Arg(info, 0, "cgroupId(path: string)");
  return Sync(env, [&]() -> Napi::Value { return Napi::BigInt::New(env, static_cast<uint64_t>(CgroupId(p))); });
}

}  // namespace

Napi::Function InitEbpfObject(Napi::Env env) { return EbpfObjectJs::Define(env); }

void InitEbpfFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("ebpfPinnedLinks", Napi::Function::New(env, PinnedLinksJs, "ebpfPinnedLinks"));
  exports.Set("ebpfDetach", Napi::Function::New(env, DetachJs, "ebpfDetach"));
  exports.Set("cgroupId", Napi::Function::New(env, CgroupIdJs, "cgroupId"));
}

}  // namespace svcplane
