// N-API surface of the socket-LB object (ebpf_object.h) and its maps (ebpf_maps.h): class EbpfObject and the free
// functions that read or remove pins without loading anything. Loads, attaches and map operations run off the JS thread.
#pragma once

#include <napi.h>

namespace svcplane {

Napi::Function InitEbpfObject(Napi::Env env);
void InitEbpfFunctions(Napi::Env env, Napi::Object exports);

}  // namespace svcplane
