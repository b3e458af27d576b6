#include <gtest/gtest.h>

#include <cstring>

#include "core/model_version.h"
#include "core/request_validator.h"
#include "core/response_finisher.h"
#include "core/server.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

Tensor MakeFp32(const std::string& name, std::vector<int64_t> shape, std::vector<float> v) {
  Tensor t;
  t.name = name;
  t.dtype = DataType::kFp32;
  t.shape = std::move(shape);
  std::memcpy(AllocateTensorData(t, v.size() * 4), v.data(), v.size() * 4);
  return t;
}

std::vector<std::string> BytesElements(const Tensor& t) {
  std::vector<std::string> out;
  size_t off = 0;
  while (off < t.byte_size) {
    uint32_t len;
    std::memcpy(&len, t.data + off, 4);
    out.emplace_back(t.data + off + 4, len);
    off += 4 + len;
  }
  return out;
}

std::shared_ptr<ModelVersion> Model(int max_batch, std::vector<int64_t> dims) {
  auto cfg = std::make_shared<inference::ModelConfig>();
  cfg->set_name("m");
  cfg->set_backend("identity");
  cfg->set_max_batch_size(max_batch);
  auto* in = cfg->add_input();
  in->set_name("IN");
  in->set_data_type(inference::TYPE_FP32);
  for (auto d : dims) in->add_dims(d);
  auto* out = cfg->add_output();
  out->set_name("OUT");
  out->set_data_type(inference::TYPE_FP32);
  for (auto d : dims) out->add_dims(d);
  return std::make_shared<ModelVersion>("m", 1, cfg, "/nonexistent");
}

TEST(Classify, TopKPerRowHighestFirstWithLabels) {
  Tensor t = MakeFp32("OUT", {2, 3}, {0.1f, 0.7f, 0.2f, 0.9f, 0.05f, 0.05f});
  std::vector<std::string> labels = {"A", "B", "C"};
  auto r = Classify(t, 2, /*batched=*/true, &labels);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->dtype, DataType::kBytes);
  EXPECT_EQ(r->shape, (std::vector<int64_t>{2, 2}));
  auto e = BytesElements(r.value());
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0], "0.700000:1:B");
  EXPECT_EQ(e[1], "0.200000:2:C");
  EXPECT_EQ(e[2], "0.900000:0:A");
}

TEST(Classify, KIsClampedAndLabelsOptional) {
  Tensor t = MakeFp32("OUT", {3}, {1, 3, 2});
  auto r = Classify(t, 10, /*batched=*/false, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->shape, (std::vector<int64_t>{3}));
  auto e = BytesElements(r.value());
  EXPECT_EQ(e[0], "3.000000:1");
  EXPECT_EQ(e[2], "1.000000:0");
}

TEST(Classify, RejectsBytes) {
  Tensor t;
  t.name = "S";
  t.dtype = DataType::kBytes;
  t.shape = {1};
  EXPECT_FALSE(Classify(t, 1, false, nullptr).ok());
}

TEST(Validate, AcceptsMatchingBatchedRequest) {
  auto m = Model(8, {4});
  InferenceRequest req;
  req.inputs.push_back(MakeFp32("IN", {2, 4}, std::vector<float>(8, 1.f)));
  ASSERT_TRUE(ValidateRequest(*m, req).ok());
  EXPECT_EQ(req.batch_size, 2);
}

TEST(Validate, NamesTensorAndShapes) {
  auto m = Model(8, {4});
  InferenceRequest req;
  req.inputs.push_back(MakeFp32("IN", {2, 5}, std::vector<float>(10, 1.f)));
  Status st = ValidateRequest(*m, req);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'IN'"), std::string::npos);
  EXPECT_NE(st.message().find("[-1,4]"), std::string::npos);
  EXPECT_NE(st.message().find("[2,5]"), std::string::npos);
}

TEST(Validate, RejectsBatchAboveMax) {
  auto m = Model(2, {4});
  InferenceRequest req;
  req.inputs.push_back(MakeFp32("IN", {3, 4}, std::vector<float>(12, 1.f)));
  EXPECT_NE(ValidateRequest(*m, req).message().find("batch-size 3"), std::string::npos);
}

TEST(Validate, RejectsWrongDtypeUnknownInputMissingInputAndByteSize) {
  auto m = Model(0, {-1});
  InferenceRequest req;
  Tensor t = MakeFp32("IN", {2}, {1, 2});
  t.dtype = DataType::kInt32;
  req.inputs.push_back(t);
  EXPECT_NE(ValidateRequest(*m, req).message().find("'INT32'"), std::string::npos);

  InferenceRequest unknown;
  unknown.inputs.push_back(MakeFp32("NOPE", {1}, {1}));
  EXPECT_NE(ValidateRequest(*m, unknown).message().find("'NOPE'"), std::string::npos);

  InferenceRequest missing;
  EXPECT_NE(ValidateRequest(*m, missing).message().find("missing required input 'IN'"),
            std::string::npos);

  InferenceRequest short_data;
  Tensor s = MakeFp32("IN", {3}, {1, 2});
  short_data.inputs.push_back(s);
  EXPECT_NE(ValidateRequest(*m, short_data).message().find("expected 12"), std::string::npos);

  InferenceRequest bad_output;
  bad_output.inputs.push_back(MakeFp32("IN", {1}, {1}));
  bad_output.outputs.push_back({"NOT_AN_OUTPUT", 0});
  EXPECT_NE(ValidateRequest(*m, bad_output).message().find("'NOT_AN_OUTPUT'"), std::string::npos);
}

TEST(Status, MapsToHttpAndGrpc) {
  EXPECT_EQ(InvalidArgument("x").HttpStatus(), 400);
  EXPECT_EQ(InvalidArgument("x").GrpcCode(), 3);
  EXPECT_EQ(NotFound("x").HttpStatus(), 404);
  EXPECT_EQ(NotFound("x").GrpcCode(), 5);
  EXPECT_EQ(Unavailable("x").HttpStatus(), 503);
  EXPECT_EQ(Unavailable("x").GrpcCode(), 14);
}

TEST(ModelVersionText, ParsesVersions) {
  EXPECT_EQ(ParseModelVersion("").value(), -1);
  EXPECT_EQ(ParseModelVersion("12").value(), 12);
  EXPECT_FALSE(ParseModelVersion("1a").ok());
  EXPECT_FALSE(ParseModelVersion("-1").ok());
  EXPECT_FALSE(ParseModelVersion("99999999999999999999999").ok());
}

}  // namespace
}  // namespace flowserve
