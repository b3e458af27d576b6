// config.pbtxt text (or, when it starts with '{', a load request's JSON override):
// parse, fill defaults, validate; a valid config is printed back as JSON and re-read.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/inprocess_server.h"
#include "model_config.pb.h"
#include "repository/model_repository.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flowserve::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = !text.empty() && text[0] == '{'
                    ? flowserve::ParseModelConfigJson(text, "m")
                    : flowserve::ParseModelConfig(text, "m/config.pbtxt", "m");
  if (!config.ok()) return 0;
  const std::string json = flowserve::ModelConfigToJson(*config.value());
  (void)flowserve::ParseModelConfigJson(json, config.value()->name());
  return 0;
}
