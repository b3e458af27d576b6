// The binary tensor extension: input = selector byte, the Inference-Header-Content-Length
// value up to the first newline (any text, so bad lengths are tried too), then the body
// (JSON header followed by raw tensor bytes).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/http_infer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nl = rest.find('\n');
  if (nl == std::string_view::npos) return 0;
  const std::string length(rest.substr(0, nl));
  auto body = std::make_shared<std::string>(rest.substr(nl + 1));
  flowserve::fuzz::HttpInfer(body, length, flowserve::fuzz::ModelName(data[0]), -1);
  return 0;
}
