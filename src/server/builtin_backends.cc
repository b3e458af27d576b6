// The composition root for backends: each compiled-in backend registers itself here.
#include "backends/backend.h"
#include "backends/identity/identity_backend.h"
#ifdef FLOWSERVE_WITH_PYTORCH
#include "backends/pytorch/pytorch_backend.h"
#endif

namespace flowserve {

void RegisterBuiltinBackends() {
  RegisterIdentityBackend();
#ifdef FLOWSERVE_WITH_PYTORCH
  RegisterPytorchBackend();
#endif
}

}  // namespace flowserve
