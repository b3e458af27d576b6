#pragma once
// What a backend module (a shared library under the backend directory) exports: one
// C function the registry looks up after dlopen. A module is loaded the first time a
// model names its backend and stays loaded for the life of the process.
#include <cstdint>

#include "backends/backend.h"

// Bumped whenever backend.h, the request/response structs or Tensor change layout.
#define FLOWSERVE_BACKEND_API_VERSION 2u
#define FLOWSERVE_BACKEND_ENTRY "FlowserveBackendCreate"

// Returns a new backend for `name` (the config's backend value), owned by the caller,
// or nullptr when `host_api_version` differs from the one the module was built with.
extern "C" flowserve::Backend* FlowserveBackendCreate(uint32_t host_api_version, const char* name);

// Defines the entry point for a backend class constructible with no arguments.
#define FLOWSERVE_DEFINE_BACKEND_MODULE(BackendClass)                                           \
  extern "C" __attribute__((visibility("default"))) flowserve::Backend* FlowserveBackendCreate( \
      uint32_t host_api_version, const char* /*name*/) {                                        \
    if (host_api_version != FLOWSERVE_BACKEND_API_VERSION) return nullptr;                      \
    return new BackendClass();                                                                  \
  }
