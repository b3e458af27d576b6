// JSON infer requests (no binary tensors): the whole input is the body, posted to a model
// chosen by the first byte, through the KServe router.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/http_route.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flowserve::fuzz::Frontend();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  flowserve::fuzz::PostInfer(flowserve::fuzz::ModelName(data[0]), "",
                             std::string(reinterpret_cast<const char*>(data) + 1, size - 1));
  return 0;
}
