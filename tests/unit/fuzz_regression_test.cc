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
  Status st =
      ParseJson(R"({"inputs": [{"name": "A", "shape": [60, 6666666662], "datatype": "INT64",)"
                R"( "data": [[1, 2], [3, 4]]}]})");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("399999999720 elements"), std::string::npos) << st.message();
}

// binary_framing: RapidJSON 1.1.0's full-precision parser read outside its power-of-ten
// table for literals far below the double range (SEGV in StrtodDiyFp).
TEST(FuzzRegression, NumbersBelowDoubleRangeAreRefusedNotParsed) {
  const std::string zeros(350, '0');
  for (const std::string& literal :
       {"0." + zeros, "0." + zeros + "1", std::string("0.0000000000000000000123e-327"),
        std::string("0.0000000000000000000000000000000000000000000000001e-300"),
        std::string("-12e-330")}) {
    Status st =
        ParseJson(R"({"inputs": [{"name": "X", "shape": [1], "datatype": "FP64", "data": [)" +
                  literal + "]}]}");
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << literal;
    EXPECT_NE(st.message().find("below the smallest double"), std::string::npos) << st.message();
  }
  // The double range's ends, a string that looks like such a number, and zeros still parse.
  for (const char* literal :
       {"5e-324", "4.9406564584124654e-324", "1.7976931348623157e308", "0.000", "0e5", "-0.0"}) {
    EXPECT_TRUE(ParseJson(R"({"id": "0.)" + zeros +
                          R"(", "inputs": [{"name": "X", "shape": [1],)"
                          R"( "datatype": "FP64", "data": [)" +
                          literal + "]}]}")
                    .ok())
        << literal;
  }
}

}  // namespace
}  // namespace flowserve
