// The binary tensor extension: input = selector byte, the Inference-Header-Content-Length
// value up to the first newline (any text, so bad lengths are tried too), then the body
// (JSON header followed by raw tensor bytes), posted through the KServe router.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/http_route.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flowserve::fuzz::Frontend();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nl = rest.find('\n');
  if (nl == std::string_view::npos) return 0;
  flowserve::fuzz::PostInfer(flowserve::fuzz::ModelName(data[0]), rest.substr(0, nl),
                             std::string(rest.substr(nl + 1)));
  return 0;
}
