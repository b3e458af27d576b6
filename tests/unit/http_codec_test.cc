// The HTTP frontend's inference codec: JSON and binary-extension requests in, JSON and
// binary-framed responses out, and a clear 400 for every malformed request.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/request_limits.h"
#include "frontends/http/infer_codec.h"

namespace flowserve {
namespace {

struct Parsed {
  Result<std::unique_ptr<InferenceRequest>> request = Status(StatusCode::kUnknown, "unset");
  InferReplyFormat format;
  std::shared_ptr<std::string> body;
};

Parsed Parse(const std::string& json, const std::string& binary = "", bool with_header = false) {
  Parsed p;
  p.body = std::make_shared<std::string>(json + binary);
  std::string len = (with_header || !binary.empty()) ? std::to_string(json.size()) : "";
  p.request = ParseInferRequest(p.body, len, "m", -1, &p.format);
  return p;
}

std::string ErrorOf(const std::string& json, const std::string& binary = "",
                    const std::string& header = "") {
  auto body = std::make_shared<std::string>(json + binary);
  InferReplyFormat format;
  std::string len = header.empty() && !binary.empty() ? std::to_string(json.size()) : header;
  auto r = ParseInferRequest(body, len, "m", -1, &format);
  EXPECT_FALSE(r.ok()) << json;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().HttpStatus(), 400) << r.status().message();
  return r.status().message();
}

template <typename T>
std::vector<T> Values(const Tensor& t) {
  std::vector<T> v(t.byte_size / sizeof(T));
  std::memcpy(v.data(), t.data, v.size() * sizeof(T));
  return v;
}

std::string Le32(uint32_t n) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &n, 4);
  return s;
}

TEST(HttpInferParse, JsonFp32FlatAndNested) {
  for (const char* data : {"[1, 2.5, -3, 4]", "[[1, 2.5], [-3, 4]]"}) {
    auto p =
        Parse(std::string(R"({"inputs":[{"name":"X","shape":[2,2],"datatype":"FP32","data":)") +
              data + "}]}");
    ASSERT_TRUE(p.request.ok()) << p.request.status().message();
    const auto& t = (*p.request)->inputs.at(0);
    EXPECT_EQ(t.name, "X");
    EXPECT_EQ(t.dtype, DataType::kFp32);
    EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(Values<float>(t), (std::vector<float>{1, 2.5f, -3, 4}));
    EXPECT_EQ((*p.request)->model_name, "m");
  }
}

TEST(HttpInferParse, EveryJsonDatatype) {
  auto check = [](const std::string& dtype, const std::string& data, const std::string& expect) {
    auto p = Parse(R"({"inputs":[{"name":"X","shape":[3],"datatype":")" + dtype + R"(","data":)" +
                   data + "}]}");
    ASSERT_TRUE(p.request.ok()) << dtype << ": " << p.request.status().message();
    const auto& t = (*p.request)->inputs.at(0);
    EXPECT_EQ(std::string(t.data, t.byte_size), expect) << dtype;
  };
  auto bytes = [](auto... v) {
    std::string s;
    ((s.append(reinterpret_cast<const char*>(&v), sizeof(v))), ...);
    return s;
  };
  check("BOOL", "[true,false,true]", bytes(true, false, true));
  check("UINT8", "[0,255,7]", bytes(uint8_t{0}, uint8_t{255}, uint8_t{7}));
  check("UINT16", "[0,65535,7]", bytes(uint16_t{0}, uint16_t{65535}, uint16_t{7}));
  check("UINT32", "[0,4294967295,7]", bytes(uint32_t{0}, uint32_t{4294967295u}, uint32_t{7}));
  check("UINT64", "[0,18446744073709551615,7]",
        bytes(uint64_t{0}, uint64_t{18446744073709551615ull}, uint64_t{7}));
  check("INT8", "[-128,127,0]", bytes(int8_t{-128}, int8_t{127}, int8_t{0}));
  check("INT16", "[-32768,32767,0]", bytes(int16_t{-32768}, int16_t{32767}, int16_t{0}));
  check("INT32", "[-2147483648,2147483647,0]",
        bytes(int32_t{-2147483647 - 1}, int32_t{2147483647}, int32_t{0}));
  check("INT64", "[-9223372036854775808,9223372036854775807,0]",
        bytes(int64_t{INT64_MIN}, int64_t{INT64_MAX}, int64_t{0}));
  check("FP32", "[0.1,-1e30,3]", bytes(0.1f, -1e30f, 3.0f));
  check("FP64", "[0.1,-1e300,3]", bytes(0.1, -1e300, 3.0));
  check("BYTES", R"(["ab","","xyz"])", Le32(2) + "ab" + Le32(0) + Le32(3) + "xyz");
}

TEST(HttpInferParse, OutOfRangeAndWrongTypeElements) {
  auto msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"INT8","data":[128]}]})");
  EXPECT_NE(msg.find("input 'X'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("INT8"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"UINT8","data":[-1]}]})");
  EXPECT_NE(msg.find("UINT8"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1.5]}]})");
  EXPECT_NE(msg.find("element 0"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":["a"]}]})");
  EXPECT_NE(msg.find("string"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"BOOL","data":[1]}]})");
  EXPECT_NE(msg.find("BOOL"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"BYTES","data":[1]}]})");
  EXPECT_NE(msg.find("BYTES"), std::string::npos) << msg;
}

TEST(HttpInferParse, ElementCountMismatchNamesBoth) {
  auto msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]})");
  EXPECT_NE(msg.find("input 'X'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2,2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expects 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("has 3"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[2],"datatype":"FP32","data":[1,2,3]}]})");
  EXPECT_NE(msg.find("has 3"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[2],"datatype":"BYTES","data":["a"]}]})");
  EXPECT_NE(msg.find("has 1"), std::string::npos) << msg;
}

TEST(HttpInferParse, BadShapes) {
  auto msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[-1,2],"datatype":"FP32","data":[]}]})");
  EXPECT_NE(msg.find("negative"), std::string::npos) << msg;
  msg = ErrorOf(
      R"({"inputs":[{"name":"X","shape":[4294967296,4294967296],"datatype":"FP32","data":[]}]})");
  EXPECT_NE(msg.find("more elements"), std::string::npos) << msg;
  msg = ErrorOf(
      R"({"inputs":[{"name":"X","shape":[2305843009213693952,4],"datatype":"FP32","data":[]}]})");
  EXPECT_NE(msg.find("more elements"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1e40],"datatype":"FP32","data":[]}]})");
  EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":"2","datatype":"FP32","data":[]}]})");
  EXPECT_NE(msg.find("'shape' must be an array"), std::string::npos) << msg;
}

TEST(HttpInferParse, MissingAndUnknownFields) {
  EXPECT_NE(ErrorOf(R"({"id":"1"})").find("no 'inputs'"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]})").find("'name'"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(R"({"inputs":[{"name":"X","datatype":"FP32","data":[1]}]})").find("missing 'shape'"),
      std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"data":[1]}]})").find("'datatype'"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"FP32"}]})").find("missing 'data'"),
      std::string::npos);
  auto msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"FP99","data":[1]}]})");
  EXPECT_NE(msg.find("unknown datatype 'FP99'"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"FP16","data":[1]}]})");
  EXPECT_NE(msg.find("binary"), std::string::npos) << msg;
  msg = ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]},)"
                R"({"name":"X","shape":[1],"datatype":"FP32","data":[1]}]})");
  EXPECT_NE(msg.find("twice"), std::string::npos) << msg;
  EXPECT_NE(ErrorOf(R"({"id":5,"inputs":[]})").find("'id'"), std::string::npos);
}

TEST(HttpInferParse, MalformedJsonNeverCrashes) {
  for (const char* bad : {"", "{", "{\"inputs\":[", "[1,2]", "nul", "{\"inputs\":[{]}", "\xff\xfe",
                          "{\"inputs\": [1]}"}) {
    std::string msg = ErrorOf(bad);
    EXPECT_FALSE(msg.empty()) << bad;
  }
  EXPECT_NE(ErrorOf("{").find("failed to parse the request JSON"), std::string::npos);
  // Deep nesting must not exhaust the stack, in the parser or in the data walk.
  std::string deep(100000, '[');
  EXPECT_FALSE(ErrorOf(deep).empty());
  std::string nested = std::string(200, '[') + "1" + std::string(200, ']');
  auto msg =
      ErrorOf(R"({"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":)" + nested + "}]}");
  EXPECT_NE(msg.find("nested"), std::string::npos) << msg;
}

// The parser's stacks start in a small buffer on the stack; headers that outgrow it (a
// long data array, deep nesting, many inputs) must still parse whole.
TEST(HttpInferParse, HeadersLargerThanTheParseBuffer) {
  std::string data = "[";
  for (int i = 0; i < 5000; ++i) data += (i ? "," : "") + std::to_string(i) + ".5";
  data += "]";
  // One element 60 levels deep: deep enough to grow the reader's stack out of the buffer.
  std::string shape = "[1", deep = std::string(60, '[') + "7" + std::string(60, ']');
  for (int i = 1; i < 60; ++i) shape += ",1";
  shape += "]";
  std::string json = R"({"id":")" + std::string(3000, 'i') +
                     R"(","inputs":[{"name":"X","shape":[5000],"datatype":"FP32","data":)" + data +
                     R"(},{"name":"D","shape":)" + shape + R"(,"datatype":"INT64","data":)" + deep +
                     "}";
  for (int i = 0; i < 40; ++i) {
    json += R"(,{"name":"Y)" + std::to_string(i) + R"(","shape":[2],"datatype":"INT32","data":[)" +
            std::to_string(i) + "," + std::to_string(-i) + "]}";
  }
  json += "]}";
  auto p = Parse(json);
  ASSERT_TRUE(p.request.ok()) << p.request.status().message();
  const auto& inputs = (*p.request)->inputs;
  ASSERT_EQ(inputs.size(), 42u);
  auto x = Values<float>(inputs.at(0));
  ASSERT_EQ(x.size(), 5000u);
  EXPECT_EQ(x[0], 0.5f);
  EXPECT_EQ(x[4999], 4999.5f);
  EXPECT_EQ(Values<int64_t>(inputs.at(1)), (std::vector<int64_t>{7}));
  EXPECT_EQ(Values<int32_t>(inputs.at(41)), (std::vector<int32_t>{39, -39}));
  EXPECT_EQ((*p.request)->id, std::string(3000, 'i'));
}

// Nesting and numbers below the double range are found by one scan before parsing: the
// limit counts only brackets outside strings, and a number too small wins over nesting.
TEST(HttpInferParse, PreParseScanLimitsNestingOutsideStrings) {
  auto with_data = [](const std::string& data, const std::string& id = "x") {
    return R"({"id":")" + id + R"(","inputs":[{"name":"X","shape":[1],"datatype":"FP64","data":)" +
           data + "}]}";
  };
  // Depth 3 ({, [, {) before the data: the data's own brackets reach the limit at
  // kMaxJsonDepth - 3 (the data walk then refuses it for its own, lower limit).
  auto nest = [](int n) { return std::string(n, '[') + "1" + std::string(n, ']'); };
  const std::string whole_limit =
      "the request JSON is nested more than " + std::to_string(kMaxJsonDepth) + " levels deep";
  EXPECT_NE(ErrorOf(with_data(nest(kMaxJsonDepth - 3))), whole_limit);
  EXPECT_NE(ErrorOf(with_data(nest(kMaxJsonDepth - 3))).find("'data' is nested"),
            std::string::npos);
  const std::string over = nest(kMaxJsonDepth - 2);
  EXPECT_EQ(ErrorOf(with_data(over)), whole_limit);
  // Brackets and quotes inside strings are text, not structure.
  EXPECT_TRUE(
      Parse(with_data("[1]", std::string(200, '[') + "\\\"" + std::string(200, '{'))).request.ok());
  EXPECT_NE(ErrorOf(with_data(nest(kMaxJsonDepth - 2).replace(kMaxJsonDepth - 2, 1, "1e-400")))
                .find("below the smallest double"),
            std::string::npos);
}

TEST(HttpInferParse, RequestParameters) {
  auto p = Parse(R"({"id":"req-7","parameters":{"priority":2,"timeout":1000,"sequence_id":42,)"
                 R"("sequence_start":true,"sequence_end":false,"binary_data_output":true,)"
                 R"("custom_s":"v","custom_i":-3,"custom_b":true,"custom_d":0.5},)"
                 R"("inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1]}]})");
  ASSERT_TRUE(p.request.ok()) << p.request.status().message();
  const auto& r = **p.request;
  EXPECT_EQ(r.id, "req-7");
  EXPECT_EQ(p.format.id, "req-7");
  EXPECT_EQ(r.priority, 2u);
  EXPECT_EQ(r.timeout_us, 1000u);
  EXPECT_EQ(r.correlation_id, 42u);
  EXPECT_TRUE(r.sequence_start);
  EXPECT_FALSE(r.sequence_end);
  EXPECT_TRUE(p.format.binary_data_output);
  EXPECT_EQ(r.parameters.count("binary_data_output"), 0u);
  EXPECT_EQ(std::get<std::string>(r.parameters.at("custom_s")), "v");
  EXPECT_EQ(std::get<int64_t>(r.parameters.at("custom_i")), -3);
  EXPECT_EQ(std::get<bool>(r.parameters.at("custom_b")), true);
  EXPECT_EQ(std::get<double>(r.parameters.at("custom_d")), 0.5);

  auto s = Parse(R"({"parameters":{"sequence_id":"abc"},)"
                 R"("inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1]}]})");
  ASSERT_TRUE(s.request.ok());
  EXPECT_EQ((*s.request)->correlation_id_str, "abc");

  EXPECT_NE(ErrorOf(R"({"parameters":{"priority":-1},"inputs":[]})").find("'priority'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"parameters":{"x":[1]},"inputs":[]})").find("'x'"), std::string::npos);
}

TEST(HttpInferParse, RequestedOutputs) {
  auto p = Parse(R"({"inputs":[],"outputs":[{"name":"A","parameters":{"classification":3}},)"
                 R"({"name":"B","parameters":{"binary_data":true}},{"name":"C"}]})");
  ASSERT_TRUE(p.request.ok()) << p.request.status().message();
  const auto& outs = (*p.request)->outputs;
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0].name, "A");
  EXPECT_EQ(outs[0].classification, 3u);
  EXPECT_EQ(outs[1].classification, 0u);
  EXPECT_FALSE(p.format.IsBinary("A"));
  EXPECT_TRUE(p.format.IsBinary("B"));
  EXPECT_FALSE(p.format.IsBinary("C"));
  EXPECT_NE(ErrorOf(R"({"inputs":[],"outputs":[{"name":"A","parameters":{"classification":0}}]})")
                .find("classification"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"inputs":[],"outputs":[{"name":"A"},{"name":"A"}]})").find("twice"),
            std::string::npos);
}

TEST(HttpInferParse, BinaryInputsReferenceTheBody) {
  std::string json =
      R"({"inputs":[{"name":"A","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},)"
      R"({"name":"J","shape":[1],"datatype":"INT8","data":[5]},)"
      R"({"name":"B","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}]})";
  float f[2] = {1.5f, -2};
  std::string binary(reinterpret_cast<const char*>(f), 8);
  binary += Le32(3) + "abc" + Le32(0);
  auto p = Parse(json, binary);
  ASSERT_TRUE(p.request.ok()) << p.request.status().message();
  const auto& in = (*p.request)->inputs;
  ASSERT_EQ(in.size(), 3u);
  // No copy: the tensors point into the body and keep it alive.
  EXPECT_EQ(in[0].data, p.body->data() + json.size());
  EXPECT_EQ(in[2].data, p.body->data() + json.size() + 8);
  EXPECT_EQ(in[0].owner.get(), p.body->data());
  EXPECT_EQ(Values<float>(in[0]), (std::vector<float>{1.5f, -2}));
  EXPECT_EQ(std::string(in[2].data, in[2].byte_size), Le32(3) + "abc" + Le32(0));
  EXPECT_EQ(Values<int8_t>(in[1]), (std::vector<int8_t>{5}));
  // The byte after the JSON was restored after the in-place parse.
  EXPECT_EQ(Values<float>(in[0])[0], 1.5f);
}

TEST(HttpInferParse, Fp16AndBf16ThroughBinary) {
  for (const char* dt : {"FP16", "BF16"}) {
    std::string json = std::string(R"({"inputs":[{"name":"H","shape":[3],"datatype":")") + dt +
                       R"(","parameters":{"binary_data_size":6}}]})";
    auto p = Parse(json, std::string("\x00\x3c\x00\x40\x00\xc0", 6));
    ASSERT_TRUE(p.request.ok()) << p.request.status().message();
    EXPECT_EQ((*p.request)->inputs[0].byte_size, 6u);
  }
}

TEST(HttpInferParse, BinaryFramingErrors) {
  std::string json =
      R"({"inputs":[{"name":"A","shape":[4],"datatype":"FP32","parameters":{"binary_data_size":16}}]})";
  auto msg = ErrorOf(json, std::string(10, 'x'));
  EXPECT_NE(msg.find("input 'A'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("goes past the end"), std::string::npos) << msg;
  msg = ErrorOf(json, std::string(20, 'x'));
  EXPECT_NE(msg.find("4 bytes of binary data that no input claims"), std::string::npos) << msg;
  msg = ErrorOf(json, std::string(16, 'x'), std::to_string(json.size() + 100));
  EXPECT_NE(msg.find("larger than the request body"), std::string::npos) << msg;
  msg = ErrorOf(json, std::string(16, 'x'), "12abc");
  EXPECT_NE(msg.find("Inference-Header-Content-Length"), std::string::npos) << msg;
  msg = ErrorOf(json, std::string(16, 'x'), "-5");
  EXPECT_NE(msg.find("Inference-Header-Content-Length"), std::string::npos) << msg;
  // Header length cuts the JSON short.
  msg = ErrorOf(json, std::string(16, 'x'), "10");
  EXPECT_NE(msg.find("failed to parse"), std::string::npos) << msg;

  std::string wrong =
      R"({"inputs":[{"name":"A","shape":[4],"datatype":"FP32","parameters":{"binary_data_size":12}}]})";
  msg = ErrorOf(wrong, std::string(12, 'x'));
  EXPECT_NE(msg.find("expected 16 bytes"), std::string::npos) << msg;
  std::string bytes =
      R"({"inputs":[{"name":"S","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":9}}]})";
  msg = ErrorOf(bytes, Le32(1) + "a" + Le32(9));
  EXPECT_NE(msg.find("length-prefixed"), std::string::npos) << msg;
  std::string both =
      R"({"inputs":[{"name":"A","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}}]})";
  EXPECT_NE(ErrorOf(both, "abcd").find("both"), std::string::npos);
}

// ---- responses -----------------------------------------------------------------------

Tensor MakeTensor(const std::string& name, DataType dtype, std::vector<int64_t> shape,
                  const std::string& bytes) {
  Tensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  char* p = AllocateTensorData(t, bytes.size());
  std::memcpy(p, bytes.data(), bytes.size());
  return t;
}

rapidjson::Document ParseJson(const std::string& s) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseNanAndInfFlag>(s.data(), s.size());
  EXPECT_FALSE(d.HasParseError()) << s;
  return d;
}

TEST(HttpInferSerialize, JsonOutputs) {
  InferenceResponse r;
  r.model_name = "m";
  r.model_version = 3;
  r.id = "abc";
  r.parameters["sequence_id"] = int64_t{9};
  float f[3] = {0.1f, -2.5f, 1e-8f};
  r.outputs.push_back(MakeTensor("F", DataType::kFp32, {3}, std::string((char*)f, 12)));
  r.outputs.push_back(MakeTensor("S", DataType::kBytes, {1, 2}, Le32(2) + "hi" + Le32(1) + "\""));
  int64_t big = INT64_MIN;
  r.outputs.push_back(MakeTensor("I", DataType::kInt64, {1}, std::string((char*)&big, 8)));
  r.outputs.push_back(MakeTensor("B", DataType::kBool, {2}, std::string("\x01\x00", 2)));
  r.outputs.push_back(MakeTensor("H", DataType::kFp16, {2}, std::string("\x00\x3c\x00\xc0", 4)));
  InferReplyFormat fmt;
  HttpReply reply = SerializeInferResponse(r, fmt);
  EXPECT_EQ(reply.status, 200);
  EXPECT_TRUE(reply.chunks.empty());
  EXPECT_TRUE(reply.headers.empty());
  auto d = ParseJson(reply.body);
  EXPECT_STREQ(d["model_name"].GetString(), "m");
  EXPECT_STREQ(d["model_version"].GetString(), "3");
  EXPECT_STREQ(d["id"].GetString(), "abc");
  EXPECT_EQ(d["parameters"]["sequence_id"].GetInt(), 9);
  const auto& outs = d["outputs"];
  ASSERT_EQ(outs.Size(), 5u);
  EXPECT_STREQ(outs[0]["datatype"].GetString(), "FP32");
  EXPECT_EQ(outs[0]["shape"][0].GetInt(), 3);
  EXPECT_EQ(static_cast<float>(outs[0]["data"][0].GetDouble()), 0.1f);
  EXPECT_EQ(static_cast<float>(outs[0]["data"][2].GetDouble()), 1e-8f);
  // Floats print at their own precision.
  EXPECT_NE(reply.body.find("[0.1,-2.5,1e-08]"), std::string::npos) << reply.body;
  EXPECT_STREQ(outs[1]["data"][0].GetString(), "hi");
  EXPECT_STREQ(outs[1]["data"][1].GetString(), "\"");
  EXPECT_EQ(outs[1]["shape"][1].GetInt(), 2);
  EXPECT_EQ(outs[2]["data"][0].GetInt64(), INT64_MIN);
  EXPECT_TRUE(outs[3]["data"][0].GetBool());
  EXPECT_FALSE(outs[3]["data"][1].GetBool());
  EXPECT_EQ(outs[4]["data"][0].GetDouble(), 1.0);
  EXPECT_EQ(outs[4]["data"][1].GetDouble(), -2.0);
}

TEST(HttpInferSerialize, BinaryOutputsAreChunksWithoutCopy) {
  InferenceResponse r;
  r.model_name = "m";
  r.model_version = 1;
  r.outputs.push_back(MakeTensor("A", DataType::kFp32, {2}, std::string(8, 'a')));
  r.outputs.push_back(MakeTensor("B", DataType::kInt8, {3}, "\x01\x02\x03"));
  r.outputs.push_back(MakeTensor("C", DataType::kBytes, {1}, Le32(1) + "z"));
  InferReplyFormat fmt;
  fmt.binary_data_output = true;
  fmt.binary_override = {{"B", false}};
  HttpReply reply = SerializeInferResponse(r, fmt);
  ASSERT_EQ(reply.chunks.size(), 2u);
  EXPECT_EQ(reply.chunks[0].data, r.outputs[0].data);
  EXPECT_EQ(reply.chunks[0].size, 8u);
  EXPECT_EQ(reply.chunks[1].data, r.outputs[2].data);
  ASSERT_EQ(reply.headers.size(), 1u);
  EXPECT_EQ(reply.headers[0].first, "Inference-Header-Content-Length");
  EXPECT_EQ(reply.headers[0].second, std::to_string(reply.body.size()));
  auto d = ParseJson(reply.body);
  EXPECT_FALSE(d.HasMember("id"));
  EXPECT_EQ(d["outputs"][0]["parameters"]["binary_data_size"].GetInt(), 8);
  EXPECT_FALSE(d["outputs"][0].HasMember("data"));
  EXPECT_EQ(d["outputs"][1]["data"][2].GetInt(), 3);
  EXPECT_EQ(d["outputs"][2]["parameters"]["binary_data_size"].GetInt(), 5);
}

TEST(HttpInferSerialize, ErrorsAndEscaping) {
  InferenceResponse r;
  r.status = InvalidArgument("bad \"input\" \\ here\n");
  HttpReply reply = SerializeInferResponse(r, InferReplyFormat{});
  EXPECT_EQ(reply.status, 400);
  auto d = ParseJson(reply.body);
  EXPECT_STREQ(d["error"].GetString(), "bad \"input\" \\ here\n");
  EXPECT_EQ(ErrorReply(Unavailable("x")).status, 503);
  EXPECT_EQ(ErrorReply(NotFound("x")).status, 404);
}

TEST(HttpInferSerialize, TruncatedOutputBufferIsNotOverread) {
  InferenceResponse r;
  r.outputs.push_back(MakeTensor("A", DataType::kFp32, {4}, std::string(8, '\0')));
  r.outputs.push_back(MakeTensor("S", DataType::kBytes, {2}, Le32(100) + "x"));
  HttpReply reply = SerializeInferResponse(r, InferReplyFormat{});
  auto d = ParseJson(reply.body);
  EXPECT_EQ(d["outputs"][0]["data"].Size(), 2u);
  EXPECT_EQ(d["outputs"][1]["data"].Size(), 0u);
}

}  // namespace
}  // namespace flowserve
