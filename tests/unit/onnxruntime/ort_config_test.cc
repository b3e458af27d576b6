// The onnxruntime backend's config auto-complete and config/model check, on the inputs
// and outputs a session would declare (no ONNX Runtime call is needed for these).
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "backends/onnxruntime/ort_config.h"
#include "model_config.pb.h"

namespace flowserve::onnxruntime {
namespace {

TensorInfo Tensor(const std::string& name, ONNXTensorElementDataType type,
                  std::vector<int64_t> dims) {
  TensorInfo t;
  t.name = name;
  t.ort_type = type;
  t.dtype = FromOrtType(type);
  t.dims = std::move(dims);
  return t;
}

constexpr auto kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr auto kString = ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING;
const char* kFile = "/repo/m/1/model.onnx";

// An image classifier: [batch, 3, 8, 8] -> [batch, 5] and a string side channel.
SessionIo Classifier() {
  SessionIo io;
  io.inputs = {Tensor("image", kFloat, {-1, 3, 8, 8}), Tensor("tag", kString, {-1, 1})};
  io.outputs = {Tensor("probs", kFloat, {-1, 5})};
  return io;
}

inference::ModelConfig Config(const std::string& text) {
  inference::ModelConfig c;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &c)) << text;
  return c;
}

std::string Text(const inference::ModelConfig& c) {
  std::string s;
  google::protobuf::TextFormat::PrintToString(c, &s);
  return s;
}

TEST(OrtAutoComplete, EmptyConfigGetsEverythingAndBatching) {
  auto c = Config("name: \"m\" backend: \"onnxruntime\"");
  ASSERT_TRUE(CompleteConfig(c, Classifier(), 4, kFile).ok());
  EXPECT_EQ(c.max_batch_size(), 4);
  EXPECT_TRUE(c.has_dynamic_batching());
  ASSERT_EQ(c.input_size(), 2);
  EXPECT_EQ(c.input(0).name(), "image");
  EXPECT_EQ(c.input(0).data_type(), inference::TYPE_FP32);
  EXPECT_EQ(std::vector<int64_t>(c.input(0).dims().begin(), c.input(0).dims().end()),
            (std::vector<int64_t>{3, 8, 8}));
  EXPECT_EQ(c.input(1).data_type(), inference::TYPE_STRING);
  ASSERT_EQ(c.output_size(), 1);
  EXPECT_EQ(c.output(0).dims_size(), 1);
  EXPECT_EQ(c.output(0).dims(0), 5);
}

TEST(OrtAutoComplete, DefaultMaxBatchSizeZeroMeansNoBatching) {
  auto c = Config("name: \"m\"");
  ASSERT_TRUE(CompleteConfig(c, Classifier(), 0, kFile).ok());
  EXPECT_EQ(c.max_batch_size(), 0);
  EXPECT_FALSE(c.has_dynamic_batching());
  EXPECT_EQ(c.input(0).dims_size(), 4);
  EXPECT_EQ(c.input(0).dims(0), -1);
}

TEST(OrtAutoComplete, FixedFirstDimMeansNoBatching) {
  SessionIo io;
  io.inputs = {Tensor("x", kFloat, {2, 3})};
  io.outputs = {Tensor("y", kFloat, {-1, 3})};
  auto c = Config("name: \"m\"");
  ASSERT_TRUE(CompleteConfig(c, io, 4, kFile).ok()) << Text(c);
  EXPECT_EQ(c.max_batch_size(), 0);
  EXPECT_EQ(c.input(0).dims_size(), 2);
}

TEST(OrtAutoComplete, ConfigWithFullRankDimsStaysUnbatched) {
  auto c = Config(R"(name: "m"
    input [ { name: "image" data_type: TYPE_FP32 dims: [ -1, 3, 8, 8 ] } ])");
  ASSERT_TRUE(CompleteConfig(c, Classifier(), 4, kFile).ok()) << Text(c);
  EXPECT_EQ(c.max_batch_size(), 0);
  ASSERT_EQ(c.input_size(), 2);  // the required "tag" input is added
  EXPECT_EQ(c.input(1).dims_size(), 2);
}

TEST(OrtAutoComplete, PartialConfigKeepsWhatItSays) {
  auto c = Config(R"(name: "m" max_batch_size: 16
    dynamic_batching { max_queue_delay_microseconds: 100 }
    input [ { name: "tag" data_type: TYPE_STRING dims: [ 1 ] }, { name: "image" } ])");
  ASSERT_TRUE(CompleteConfig(c, Classifier(), 4, kFile).ok()) << Text(c);
  EXPECT_EQ(c.max_batch_size(), 16);
  EXPECT_EQ(c.dynamic_batching().max_queue_delay_microseconds(), 100u);
  ASSERT_EQ(c.input_size(), 2);
  EXPECT_EQ(c.input(0).name(), "tag");  // order kept
  EXPECT_EQ(c.input(1).data_type(), inference::TYPE_FP32);
  EXPECT_EQ(c.input(1).dims_size(), 3);
  EXPECT_EQ(c.output_size(), 1);
}

TEST(OrtAutoComplete, ListedOutputsAreASubsetAndStaySo) {
  SessionIo io = Classifier();
  io.outputs.push_back(Tensor("logits", kFloat, {-1, 5}));
  auto c = Config(R"(name: "m" output [ { name: "probs" data_type: TYPE_FP32 dims: [ 5 ] } ])");
  ASSERT_TRUE(CompleteConfig(c, io, 4, kFile).ok()) << Text(c);
  ASSERT_EQ(c.output_size(), 1);
  EXPECT_EQ(c.output(0).name(), "probs");
}

TEST(OrtAutoComplete, ScalarPerItemGetsDimsOneAndEmptyReshape) {
  SessionIo io;
  io.inputs = {Tensor("x", kFloat, {-1})};
  io.outputs = {Tensor("y", kFloat, {-1})};
  auto c = Config("name: \"m\"");
  ASSERT_TRUE(CompleteConfig(c, io, 4, kFile).ok()) << Text(c);
  EXPECT_EQ(c.max_batch_size(), 4);
  ASSERT_EQ(c.input(0).dims_size(), 1);
  EXPECT_EQ(c.input(0).dims(0), 1);
  EXPECT_TRUE(c.input(0).has_reshape());
  EXPECT_EQ(c.input(0).reshape().shape_size(), 0);
}

TEST(OrtAutoComplete, MaxBatchSizeOneGetsNoBatcher) {
  auto c = Config("name: \"m\" max_batch_size: 1");
  ASSERT_TRUE(CompleteConfig(c, Classifier(), 4, kFile).ok());
  EXPECT_FALSE(c.has_dynamic_batching());
}

std::string CheckError(const std::string& text, const SessionIo& io = Classifier()) {
  auto st = CheckConfig(Config(text), io, kFile);
  EXPECT_FALSE(st.ok()) << text;
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(kFile), std::string::npos) << st.message();
  return st.message();
}

const char* kGood = R"(max_batch_size: 8
  input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 8, 8 ] },
          { name: "tag" data_type: TYPE_STRING dims: [ 1 ] } ]
  output [ { name: "probs" data_type: TYPE_FP32 dims: [ 5 ] } ])";

TEST(OrtConfigCheck, AgreeingConfigPasses) {
  EXPECT_TRUE(CheckConfig(Config(kGood), Classifier(), kFile).ok());
}

TEST(OrtConfigCheck, WrongDimNamesTensorAndBothShapes) {
  std::string text = kGood;
  text.replace(text.find("3, 8, 8"), 7, "3, 9, 8");
  auto m = CheckError(text);
  EXPECT_NE(m.find("'image'"), std::string::npos) << m;
  EXPECT_NE(m.find("[3,9,8]"), std::string::npos) << m;
  EXPECT_NE(m.find("[-1,3,8,8]"), std::string::npos) << m;
}

TEST(OrtConfigCheck, ConfigWildcardAgainstFixedModelDimFails) {
  std::string text = kGood;
  text.replace(text.find("3, 8, 8"), 7, "3, -1, 8");
  EXPECT_NE(CheckError(text).find("'image'"), std::string::npos);
}

TEST(OrtConfigCheck, WrongTypeNamesBothTypes) {
  std::string text = kGood;
  text.replace(text.find("TYPE_FP32 dims: [ 5 ]"), 9, "TYPE_FP16");
  auto m = CheckError(text);
  EXPECT_NE(m.find("'probs'"), std::string::npos) << m;
  EXPECT_NE(m.find("TYPE_FP16"), std::string::npos) << m;
  EXPECT_NE(m.find("tensor(float)"), std::string::npos) << m;
}

TEST(OrtConfigCheck, UnknownNameListsTheModelsTensors) {
  std::string text = kGood;
  text.replace(text.find("\"probs\""), 7, "\"prob\"");
  auto m = CheckError(text);
  EXPECT_NE(m.find("'prob'"), std::string::npos) << m;
  EXPECT_NE(m.find("'probs' tensor(float) [-1,5]"), std::string::npos) << m;
}

TEST(OrtConfigCheck, MissingRequiredInputIsNamed) {
  auto m = CheckError(R"(max_batch_size: 8
    input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 8, 8 ] } ]
    output [ { name: "probs" data_type: TYPE_FP32 dims: [ 5 ] } ])");
  EXPECT_NE(m.find("'tag'"), std::string::npos) << m;
}

TEST(OrtConfigCheck, BatchingNeedsADynamicFirstDim) {
  SessionIo io;
  io.inputs = {Tensor("x", kFloat, {1, 3})};
  io.outputs = {Tensor("y", kFloat, {1, 3})};
  auto m = CheckError(R"(max_batch_size: 4
    input [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]
    output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ])",
                      io);
  EXPECT_NE(m.find("max_batch_size 4"), std::string::npos) << m;
  EXPECT_NE(m.find("[1,3]"), std::string::npos) << m;
}

TEST(OrtConfigCheck, ReshapeIsComparedInsteadOfDims) {
  SessionIo io;
  io.inputs = {Tensor("x", kFloat, {-1, 2, 2})};
  io.outputs = {Tensor("y", kFloat, {-1, 4})};
  EXPECT_TRUE(CheckConfig(Config(R"(max_batch_size: 4
    input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 2, 2 ] } } ]
    output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ])"),
                          io, kFile)
                  .ok());
}

}  // namespace
}  // namespace flowserve::onnxruntime
