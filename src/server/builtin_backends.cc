// The composition root for built-in backends. Framework backends (pytorch, onnxruntime,
// ...) are modules the registry loads on first use; only these live in the binary.
#include "backends/backend.h"
#include "backends/identity/identity_backend.h"
#include "backends/oneflow/oneflow_stub_backend.h"

namespace flowserve {

void RegisterBuiltinBackends() {
  RegisterIdentityBackend();
  RegisterOneflowStubBackend();
}

}  // namespace flowserve
