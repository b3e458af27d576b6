// JSON infer requests (no binary tensors): the whole input is the body, posted to a model
// chosen by the first byte.
#include <cstddef>
#include <cstdint>

#include "fuzz/http_infer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto body = std::make_shared<std::string>(reinterpret_cast<const char*>(data) + 1, size - 1);
  flowserve::fuzz::HttpInfer(body, "", flowserve::fuzz::ModelName(data[0]), -1);
  return 0;
}
