// Inputs the fuzzers (fuzz/) found crashing something, each replayed through the same
// entry point and required to fail cleanly.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "frontends/http/infer_codec.h"

namespace flowserve {
namespace {

Status ParseJson(const std::string& json) {
  auto body = std::make_shared<std::string>(json);
  InferReplyFormat format;
  auto r = ParseInferRequest(body, "", "m", -1, &format);
  return r.ok() ? Status::Ok() : r.status();
}

// json_infer_request: a shape of 400 billion elements with four values allocated
// 3.2 TB before counting the values (std::bad_alloc: the server died).
TEST(FuzzRegression, HugeJsonShapeIsRefusedBeforeAllocating) {
  Status st = ParseJson(
      R"({"inputs": [{"name": "A", "shape": [60, 6666666662], "datatype": "INT64",)"
      R"( "data": [[1, 2], [3, 4]]}]})");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("399999999720 elements"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace flowserve
