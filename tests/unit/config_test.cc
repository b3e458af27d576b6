// config.pbtxt parsing, validation, defaults, version policy, repository scan and the
// JSON form of a config.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "model_config.pb.h"
#include "repository/model_repository.h"

namespace flowserve {
namespace {

namespace fs = std::filesystem;
using ConfigPtr = std::shared_ptr<inference::ModelConfig>;

Result<ConfigPtr> Parse(const std::string& text, const std::string& folder = "m") {
  return ParseModelConfig(text, folder + "/config.pbtxt", folder);
}

// Parses text expected to be rejected and returns the message.
std::string ParseError(const std::string& text) {
  auto r = Parse(text);
  EXPECT_FALSE(r.ok()) << "accepted:\n" << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().message();
  return r.status().message();
}

const char* kMinimal = R"(
name: "m"
backend: "identity"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
)";

// Every section of the schema the issue lists, in one file.
const char* kFull = R"(
name: "full"
platform: "pytorch_libtorch"
version_policy: { specific: { versions: [ 1, 3 ] } }
max_batch_size: 8
input [
  {
    name: "IMAGE"
    data_type: TYPE_UINT8
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
  },
  {
    name: "FLAT"
    data_type: TYPE_FP32
    dims: [ 16 ]
    reshape: { shape: [ 4, 4 ] }
    optional: true
  },
  {
    name: "SHAPE"
    data_type: TYPE_INT32
    dims: [ 2 ]
    is_shape_tensor: true
  }
]
output [
  {
    name: "PROB"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "labels.txt"
  },
  {
    name: "TEXT"
    data_type: TYPE_STRING
    dims: [ -1 ]
  }
]
instance_group [
  { name: "cpus" count: 2 kind: KIND_CPU },
  { count: 1 kind: KIND_GPU gpus: [ 0, 1 ] }
]
default_model_filename: "weights.pt"
parameters: { key: "execute_delay_ms" value: { string_value: "5" } }
parameters [ { key: "mode" value: { string_value: "fast" } } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  preserve_ordering: true
  priority_levels: 3
  default_priority_level: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5000 max_queue_size: 16 }
  priority_queue_policy {
    key: 1
    value { timeout_action: REJECT allow_timeout_override: true max_queue_size: 4 }
  }
}
model_warmup [
  {
    name: "zeros"
    batch_size: 2
    count: 3
    inputs { key: "FLAT" value { data_type: TYPE_FP32 dims: [ 16 ] zero_data: true } }
  }
]
response_cache { enable: true }
)";

TEST(ConfigParse, EverySectionOfTheSchema) {
  auto r = Parse(kFull, "full");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& c = **r;
  EXPECT_EQ(c.name(), "full");
  EXPECT_EQ(c.backend(), "pytorch");  // derived from the platform
  ASSERT_TRUE(c.version_policy().has_specific());
  EXPECT_EQ(c.version_policy().specific().versions_size(), 2);
  EXPECT_EQ(c.max_batch_size(), 8);
  ASSERT_EQ(c.input_size(), 3);
  EXPECT_EQ(c.input(0).format(), inference::ModelInput::FORMAT_NCHW);
  EXPECT_EQ(c.input(0).data_type(), inference::TYPE_UINT8);
  EXPECT_EQ(c.input(0).dims_size(), 3);
  EXPECT_EQ(c.input(1).reshape().shape_size(), 2);
  EXPECT_TRUE(c.input(1).optional());
  EXPECT_TRUE(c.input(2).is_shape_tensor());
  ASSERT_EQ(c.output_size(), 2);
  EXPECT_EQ(c.output(0).label_filename(), "labels.txt");
  EXPECT_EQ(c.output(1).data_type(), inference::TYPE_STRING);
  EXPECT_EQ(c.output(1).dims(0), -1);
  ASSERT_EQ(c.instance_group_size(), 2);
  EXPECT_EQ(c.instance_group(0).name(), "cpus");
  EXPECT_EQ(c.instance_group(0).count(), 2);
  EXPECT_EQ(c.instance_group(1).name(), "full_1");
  EXPECT_EQ(c.instance_group(1).kind(), inference::ModelInstanceGroup::KIND_GPU);
  EXPECT_EQ(c.instance_group(1).gpus_size(), 2);
  EXPECT_EQ(c.default_model_filename(), "weights.pt");
  EXPECT_EQ(c.parameters().at("execute_delay_ms").string_value(), "5");
  EXPECT_EQ(c.parameters().at("mode").string_value(), "fast");
  const auto& db = c.dynamic_batching();
  EXPECT_EQ(db.preferred_batch_size_size(), 2);
  EXPECT_EQ(db.max_queue_delay_microseconds(), 100u);
  EXPECT_TRUE(db.preserve_ordering());
  EXPECT_EQ(db.priority_levels(), 3u);
  EXPECT_EQ(db.default_priority_level(), 2u);
  EXPECT_EQ(db.default_queue_policy().timeout_action(), inference::ModelQueuePolicy::DELAY);
  EXPECT_EQ(db.priority_queue_policy().at(1).max_queue_size(), 4u);
  ASSERT_EQ(c.model_warmup_size(), 1);
  EXPECT_EQ(c.model_warmup(0).batch_size(), 2u);
  EXPECT_TRUE(c.model_warmup(0).inputs().at("FLAT").zero_data());
  EXPECT_TRUE(c.response_cache().enable());
}

TEST(ConfigParse, SequenceBatching) {
  auto r = Parse(R"(
name: "m"
backend: "identity"
max_batch_size: 4
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2 ] }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
  state [ { input_name: "SI" output_name: "SO" data_type: TYPE_FP32 dims: [ 1 ]
            initial_state: [ { name: "init" data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } ] } ]
}
)");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& sb = (*r)->sequence_batching();
  EXPECT_EQ(sb.max_sequence_idle_microseconds(), 5000000u);
  EXPECT_EQ(sb.oldest().max_candidate_sequences(), 4);
  ASSERT_EQ(sb.control_input_size(), 2);
  EXPECT_EQ(sb.control_input(1).control(0).kind(),
            inference::ModelSequenceBatching::Control::CONTROL_SEQUENCE_CORRID);
  EXPECT_EQ(sb.state(0).initial_state(0).name(), "init");
}

const char* kEnsemble = R"(
name: "m"
platform: "ensemble"
max_batch_size: 4
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "FINAL" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling {
  step [
    { model_name: "pre" model_version: -1
      input_map { key: "IN" value: "RAW" } output_map { key: "OUT" value: "MID" } },
    { model_name: "post" model_version: 2
      input_map { key: "IN" value: "MID" } output_map { key: "OUT" value: "FINAL" } }
  ]
}
)";

TEST(ConfigParse, Ensemble) {
  auto r = Parse(kEnsemble);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->backend(), "");
  ASSERT_EQ((*r)->ensemble_scheduling().step_size(), 2);
  EXPECT_EQ((*r)->ensemble_scheduling().step(1).input_map().at("IN"), "MID");
  EXPECT_EQ((*r)->ensemble_scheduling().step(1).model_version(), 2);
}

TEST(ConfigDefaults, FilledLikeTriton) {
  auto r = Parse(R"(
backend: "identity"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
)");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& c = **r;
  EXPECT_EQ(c.name(), "m");  // from the folder
  EXPECT_EQ(c.platform(), "");
  ASSERT_TRUE(c.version_policy().has_latest());
  EXPECT_EQ(c.version_policy().latest().num_versions(), 1u);
  ASSERT_EQ(c.instance_group_size(), 1);
  EXPECT_EQ(c.instance_group(0).name(), "m");
  EXPECT_EQ(c.instance_group(0).count(), 1);
  EXPECT_EQ(c.instance_group(0).kind(), inference::ModelInstanceGroup::KIND_CPU);
}

TEST(ConfigDefaults, InstanceGroupCountAndKind) {
  auto r = Parse(std::string(kMinimal) + "instance_group [ { kind: KIND_AUTO }, { count: 3 } ]");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->instance_group(0).count(), 1);
  EXPECT_EQ((*r)->instance_group(0).kind(), inference::ModelInstanceGroup::KIND_AUTO);
  EXPECT_EQ((*r)->instance_group(0).name(), "m_0");
  EXPECT_EQ((*r)->instance_group(1).count(), 3);
  EXPECT_EQ((*r)->instance_group(1).name(), "m_1");
}

TEST(ConfigDefaults, PlatformBackendAliases) {
  const std::pair<const char*, const char*> cases[] = {
      {"pytorch_libtorch", "pytorch"},       {"onnxruntime_onnx", "onnxruntime"},
      {"tensorrt_plan", "tensorrt"},         {"tensorflow_savedmodel", "tensorflow"},
      {"tensorflow_graphdef", "tensorflow"},
  };
  const std::string io = R"(
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ])";
  for (auto [platform, backend] : cases) {
    auto r = Parse(std::string("platform: \"") + platform + "\"" + io);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ((*r)->backend(), backend) << platform;
    EXPECT_EQ((*r)->platform(), platform);
  }
  auto r = Parse("backend: \"pytorch\"" + io);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->platform(), "pytorch_libtorch");
}

// --- rejected files: each message names the file, line:column and the field ----------

TEST(ConfigErrors, UnknownField) {
  std::string e = ParseError(R"(name: "m"
backend: "identity"
input [ { name: "IN" data_type: TYPE_FP32
  foo: 3 dims: [ 1 ] } ]
)");
  EXPECT_EQ(e, "m/config.pbtxt:4:3: unknown field 'foo' in inference.ModelInput");
}

TEST(ConfigErrors, UnknownEnumName) {
  std::string e = ParseError(R"(name: "m"
backend: "identity"
input [ { name: "IN"
          data_type: TYPE_FLOAT32 dims: [ 1 ] } ]
)");
  EXPECT_EQ(e, "m/config.pbtxt:4:22: unknown enum value 'TYPE_FLOAT32' for field 'data_type'");
}

TEST(ConfigErrors, UnknownEnumNumber) {
  std::string e = ParseError(std::string(kMinimal) + "instance_group [ { kind: 9 } ]");
  EXPECT_NE(e.find("m/config.pbtxt:6:20:"), std::string::npos) << e;
  EXPECT_NE(e.find("instance_group[0].kind"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown enum value 9"), std::string::npos) << e;
}

TEST(ConfigErrors, Syntax) {
  std::string e = ParseError("name: \"m\"\nmax_batch_size: eight\n");
  EXPECT_NE(e.find("m/config.pbtxt:2:17:"), std::string::npos) << e;
  EXPECT_NE(e.find("eight"), std::string::npos) << e;
}

TEST(ConfigErrors, TwoSchedulers) {
  std::string e = ParseError(std::string(kMinimal) + "dynamic_batching {}\nsequence_batching {}");
  EXPECT_EQ(e,
            "m/config.pbtxt:7:1: field 'sequence_batching' cannot be combined with "
            "'dynamic_batching' (both are choices of oneof 'scheduling_choice')");
}

TEST(ConfigErrors, FieldGivenTwice) {
  std::string e = ParseError(std::string(kMinimal) + "  max_batch_size: 1 max_batch_size: 2");
  EXPECT_EQ(e, "m/config.pbtxt:6:21: field 'max_batch_size' is given more than once");
}

TEST(ConfigErrors, MissingBackend) {
  std::string e = ParseError(R"(name: "m"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
)");
  EXPECT_NE(e.find("m/config.pbtxt"), std::string::npos) << e;
  EXPECT_NE(e.find("no 'backend'"), std::string::npos) << e;
}

TEST(ConfigErrors, UnknownPlatform) {
  std::string e = ParseError("platform: \"caffe2_netdef\"\n");
  EXPECT_NE(e.find("m/config.pbtxt:1:1: platform: unknown platform 'caffe2_netdef'"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, BackendConflictsWithPlatform) {
  std::string e = ParseError("platform: \"onnxruntime_onnx\"\nbackend: \"pytorch\"\n");
  EXPECT_NE(e.find("m/config.pbtxt:2:1: backend: backend 'pytorch' conflicts"), std::string::npos)
      << e;
}

TEST(ConfigErrors, NameDoesNotMatchFolder) {
  std::string e = ParseError("\nname: \"other\"\nbackend: \"identity\"\n");
  EXPECT_NE(e.find("m/config.pbtxt:2:1: name: model name 'other' does not match its folder name "
                   "'m'"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, DuplicateInputName) {
  std::string e = ParseError(R"(name: "m"
backend: "identity"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] },
        { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
)");
  EXPECT_NE(e.find("m/config.pbtxt:4:11: input[1].name: duplicate input name 'IN'"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, DuplicateOutputName) {
  std::string e = ParseError(std::string(kMinimal) +
                             "output [ { name: \"OUT\" data_type: TYPE_FP32 dims: [ 4 ] } ]");
  EXPECT_NE(e.find("m/config.pbtxt:6:12: output[1].name: duplicate output name 'OUT'"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, ZeroDim) {
  std::string e = ParseError(R"(name: "m"
backend: "identity"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2, 0 ] } ]
)");
  EXPECT_NE(e.find("m/config.pbtxt:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("input[0].dims[1]: input 'IN' has invalid dim 0 in [2,0]"), std::string::npos)
      << e;
}

TEST(ConfigErrors, NegativeDim) {
  std::string e = ParseError(R"(name: "m"
backend: "identity"
output [ { name: "OUT" data_type: TYPE_FP32
           dims: [ -2 ] } ]
)");
  EXPECT_NE(e.find("m/config.pbtxt:4:"), std::string::npos) << e;
  EXPECT_NE(e.find("output[0].dims[0]: output 'OUT' has invalid dim -2"), std::string::npos) << e;
}

TEST(ConfigErrors, MissingDims) {
  std::string e =
      ParseError("backend: \"identity\"\ninput [ { name: \"IN\" data_type: TYPE_FP32 } ]");
  EXPECT_NE(e.find("m/config.pbtxt:2:11: input[0]: input 'IN' must specify dims"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, MissingDataType) {
  std::string e = ParseError("backend: \"identity\"\ninput [ { name: \"IN\" dims: [ 1 ] } ]");
  EXPECT_NE(e.find("m/config.pbtxt:2:11: input[0].data_type: input 'IN' must specify a data_type"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, NegativeMaxBatchSize) {
  std::string e = ParseError("backend: \"identity\"\nmax_batch_size: -1\n");
  EXPECT_EQ(e, "m/config.pbtxt:2:1: max_batch_size: must be >= 0, got -1");
}

TEST(ConfigErrors, ReshapeElementCount) {
  std::string e = ParseError(R"(backend: "identity"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 16 ]
          reshape: { shape: [ 4, 5 ] } } ]
)");
  EXPECT_NE(e.find("m/config.pbtxt:3:11: input[0].reshape: input 'IN': reshape [4,5] has 20 "
                   "elements but dims [16] have 16"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, EmptyReshapeWithoutBatching) {
  std::string e = ParseError(R"(backend: "identity"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]
)");
  EXPECT_NE(e.find("input[0].reshape: input 'IN' cannot have an empty reshape"), std::string::npos)
      << e;
  // ...but with batching, [1] -> [] is the usual way to feed a scalar per batch item.
  auto ok = Parse(R"(backend: "identity"
max_batch_size: 2
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]
)");
  EXPECT_TRUE(ok.ok()) << ok.status().message();
}

TEST(ConfigErrors, FormatNeedsThreeDims) {
  std::string e = ParseError(R"(backend: "identity"
input [ { name: "IN" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [ 4, 4 ] } ]
)");
  EXPECT_NE(e.find("m/config.pbtxt:2:43: input[0].format: input 'IN' with format FORMAT_NHWC needs "
                   "3 dims"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, ShapeTensorType) {
  std::string e = ParseError(R"(backend: "identity"
input [ { name: "S" data_type: TYPE_FP32 dims: [ 2 ] is_shape_tensor: true } ]
)");
  EXPECT_NE(e.find("input[0].is_shape_tensor: input 'S' is a shape tensor and must be TYPE_INT32"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, NegativeInstanceCount) {
  std::string e = ParseError(std::string(kMinimal) + "instance_group [ { count: -2 } ]");
  EXPECT_EQ(e, "m/config.pbtxt:6:20: instance_group[0].count: must be >= 0, got -2");
}

TEST(ConfigErrors, NegativeGpuId) {
  std::string e = ParseError(std::string(kMinimal) + "instance_group [ { gpus: [ 0, -1 ] } ]");
  EXPECT_NE(e.find("instance_group[0].gpus[1]: gpu id must be >= 0, got -1"), std::string::npos)
      << e;
}

TEST(ConfigErrors, LatestZeroVersions) {
  std::string e =
      ParseError(std::string(kMinimal) + "version_policy { latest { num_versions: 0 } }");
  EXPECT_EQ(e, "m/config.pbtxt:6:27: version_policy.latest.num_versions: must be > 0, got 0");
}

TEST(ConfigErrors, SpecificWithoutVersions) {
  std::string e = ParseError(std::string(kMinimal) + "version_policy { specific { } }");
  EXPECT_NE(e.find("version_policy.specific: must list at least one version"), std::string::npos)
      << e;
}

TEST(ConfigErrors, PreferredBatchSizeAboveMax) {
  std::string e =
      ParseError(std::string(kMinimal) +
                 "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 2, 8 ] }");
  EXPECT_NE(e.find("m/config.pbtxt:7:"), std::string::npos) << e;
  EXPECT_NE(e.find("dynamic_batching.preferred_batch_size[1]: must be in [1, max_batch_size=4], "
                   "got 8"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, PreferredBatchSizeZero) {
  std::string e = ParseError(std::string(kMinimal) +
                             "max_batch_size: 4\ndynamic_batching { preferred_batch_size: 0 }");
  EXPECT_NE(e.find("dynamic_batching.preferred_batch_size[0]: must be in [1, max_batch_size=4], "
                   "got 0"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, DynamicBatchingWithoutBatching) {
  std::string e = ParseError(std::string(kMinimal) + "dynamic_batching { }");
  EXPECT_EQ(e,
            "m/config.pbtxt:6:1: dynamic_batching: dynamic batching needs max_batch_size > 0, "
            "got 0");
}

TEST(ConfigErrors, DefaultPriorityLevelOutOfRange) {
  std::string e = ParseError(std::string(kMinimal) +
                             "max_batch_size: 4\n"
                             "dynamic_batching { priority_levels: 2 default_priority_level: 3 }");
  EXPECT_NE(e.find("m/config.pbtxt:7:39: dynamic_batching.default_priority_level: must be in [1, "
                   "priority_levels=2], got 3"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, PriorityLevelWithoutLevels) {
  std::string e = ParseError(std::string(kMinimal) +
                             "max_batch_size: 4\ndynamic_batching { default_priority_level: 1 }");
  EXPECT_NE(e.find("dynamic_batching.default_priority_level: is 1 but priority_levels is not set"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, PriorityQueuePolicyKeyOutOfRange) {
  std::string e = ParseError(std::string(kMinimal) + R"(max_batch_size: 4
dynamic_batching {
  priority_levels: 2 default_priority_level: 1
  priority_queue_policy { key: 5 value { max_queue_size: 1 } }
})");
  EXPECT_NE(e.find("m/config.pbtxt:9:27: dynamic_batching.priority_queue_policy: priority level 5 "
                   "is outside [1, priority_levels=2]"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, EnsembleWithoutScheduling) {
  std::string e = ParseError("platform: \"ensemble\"\n");
  EXPECT_EQ(e, "m/config.pbtxt:1:1: platform: platform \"ensemble\" requires ensemble_scheduling");
}

TEST(ConfigErrors, EnsembleSchedulingWithoutEnsemblePlatform) {
  std::string e =
      ParseError(std::string(kMinimal) + "ensemble_scheduling { step [ { model_name: \"a\" } ] }");
  EXPECT_NE(e.find("m/config.pbtxt:6:1: ensemble_scheduling: only allowed with platform "
                   "\"ensemble\""),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, EnsembleStepWithoutModel) {
  std::string e = ParseError(R"(platform: "ensemble"
ensemble_scheduling { step [ { model_name: "a" }, { model_version: 1 } ] }
)");
  EXPECT_NE(e.find("m/config.pbtxt:2:53: ensemble_scheduling.step[1]: a step must name a model"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, EnsembleReadsUnknownTensor) {
  std::string text = kEnsemble;
  text.replace(text.find("value: \"MID\" } output_map { key: \"OUT\" value: \"FINAL\""), 12,
               "value: \"MYSTERY\"");
  std::string e = ParseError(text);
  EXPECT_NE(e.find("ensemble_scheduling.step[1].input_map: step 'post' reads tensor 'MYSTERY'"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, EnsembleOutputNotProduced) {
  std::string text = kEnsemble;
  text.replace(text.find("\"FINAL\" } }"), 7, "\"OTHER\"");
  std::string e = ParseError(text);
  EXPECT_NE(e.find("m/config.pbtxt:6:12: output[0]: ensemble output 'FINAL' is not produced"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, WarmupDims) {
  std::string e = ParseError(std::string(kMinimal) + R"(model_warmup [ { name: "w"
  inputs { key: "IN" value { data_type: TYPE_FP32 dims: [ -1 ] zero_data: true } } } ])");
  EXPECT_NE(e.find("model_warmup[0].inputs: warmup input 'IN' has invalid dim -1"),
            std::string::npos)
      << e;
}

// --- JSON -------------------------------------------------------------------------

TEST(ConfigJson, ParseOverride) {
  auto r = ParseModelConfigJson(R"({"backend":"identity","max_batch_size":4,
      "input":[{"name":"IN","data_type":"TYPE_INT64","dims":[-1, "8"]}],
      "output":[{"name":"OUT","data_type":"TYPE_INT64","dims":[-1,8]}],
      "dynamic_batching":{"max_queue_delay_microseconds":"100"}})",
                                "m");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->name(), "m");
  EXPECT_EQ((*r)->input(0).dims(1), 8);
  EXPECT_EQ((*r)->dynamic_batching().max_queue_delay_microseconds(), 100u);
  EXPECT_EQ((*r)->instance_group_size(), 1);  // defaults filled like text configs
}

TEST(ConfigJson, ParseErrors) {
  auto unknown = ParseModelConfigJson(R"({"backend":"identity","bogus":1})", "m");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("config JSON for 'm'"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("bogus"), std::string::npos)
      << unknown.status().message();
  auto invalid = ParseModelConfigJson(R"({"backend":"identity","max_batch_size":-3})", "m");
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status().message(),
            "config JSON for 'm': max_batch_size: must be >= 0, got -3");
  auto broken = ParseModelConfigJson("{\"backend\":", "m");
  EXPECT_FALSE(broken.ok());
}

TEST(ConfigJson, WriterShape) {
  auto r = Parse(kFull, "full");
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::string json = ModelConfigToJson(**r);
  rapidjson::Document d;
  ASSERT_FALSE(d.Parse(json.c_str()).HasParseError()) << json;
  ASSERT_TRUE(d.IsObject());
  EXPECT_STREQ(d["name"].GetString(), "full");
  EXPECT_STREQ(d["backend"].GetString(), "pytorch");
  EXPECT_EQ(d["max_batch_size"].GetInt(), 8);
  // int64 values are numbers, not the strings protobuf's JSON printer would emit.
  const auto& dims = d["input"][0]["dims"];
  ASSERT_TRUE(dims.IsArray());
  ASSERT_TRUE(dims[0].IsInt64());
  EXPECT_EQ(dims[1].GetInt64(), 224);
  EXPECT_EQ(d["output"][1]["dims"][0].GetInt64(), -1);
  EXPECT_TRUE(d["version_policy"]["specific"]["versions"][1].IsInt64());
  EXPECT_TRUE(d["dynamic_batching"]["max_queue_delay_microseconds"].IsUint64());
  // enums by name
  EXPECT_STREQ(d["input"][0]["data_type"].GetString(), "TYPE_UINT8");
  EXPECT_STREQ(d["input"][0]["format"].GetString(), "FORMAT_NCHW");
  EXPECT_STREQ(d["input"][1]["format"].GetString(), "FORMAT_NONE");
  EXPECT_STREQ(d["instance_group"][0]["kind"].GetString(), "KIND_CPU");
  // defaults printed, proto field names
  EXPECT_TRUE(d["input"][1]["is_shape_tensor"].IsFalse());
  EXPECT_TRUE(d["input"][1]["optional"].IsTrue());
  EXPECT_TRUE(d["batch_input"].IsArray());
  EXPECT_EQ(d["batch_input"].Size(), 0u);
  EXPECT_TRUE(d["cc_model_filenames"].IsObject());
  // maps are objects (keys as strings), sub-messages and oneofs only when set
  EXPECT_STREQ(d["parameters"]["mode"]["string_value"].GetString(), "fast");
  EXPECT_EQ(d["dynamic_batching"]["priority_queue_policy"]["1"]["max_queue_size"].GetUint(), 4u);
  EXPECT_FALSE(d.HasMember("sequence_batching"));
  EXPECT_FALSE(d.HasMember("ensemble_scheduling"));
  EXPECT_FALSE(d.HasMember("optimization"));
  EXPECT_FALSE(d["version_policy"].HasMember("latest"));
  EXPECT_TRUE(d["model_warmup"][0]["inputs"]["FLAT"]["zero_data"].IsTrue());
  EXPECT_FALSE(d["model_warmup"][0]["inputs"]["FLAT"].HasMember("random_data"));
  EXPECT_TRUE(d["response_cache"]["enable"].IsTrue());
}

TEST(ConfigJson, FloatsAndRoundTrip) {
  auto r = Parse(R"(backend: "identity"
max_batch_size: 2
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
sequence_batching {
  direct { minimum_slot_utilization: 0.1 }
  control_input [ { name: "R" control [ { kind: CONTROL_SEQUENCE_READY
                                          fp32_false_true: [ 0, 1.5 ] } ] } ]
}
)");
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::string json = ModelConfigToJson(**r);
  EXPECT_NE(json.find("\"minimum_slot_utilization\":0.1}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"fp32_false_true\":[0,1.5]"), std::string::npos) << json;
  auto back = ParseModelConfigJson(json, "m");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(**r, **back));
}

// --- disk: scan, versions, labels, loading -------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "flowserve-config-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  void Write(const std::string& rel, const std::string& content) const {
    fs::create_directories((path_ / rel).parent_path());
    std::ofstream(path_ / rel) << content;
  }
  void Mkdir(const std::string& rel) const { fs::create_directories(path_ / rel); }

 private:
  fs::path path_;
};

TEST(Versions, ListNumericFoldersOnly) {
  TempDir t;
  for (const char* d : {"1", "2", "10", "007", "abc", "-1", "3a", ".5", "99999999999999999999"}) {
    t.Mkdir(d);
  }
  t.Write("4", "a file, not a folder");
  EXPECT_EQ(ListVersions(t.path().string()), (std::vector<int64_t>{1, 2, 7, 10}));
  EXPECT_TRUE(ListVersions((t.path() / "missing").string()).empty());
}

inference::ModelConfig WithPolicy(const std::string& policy) {
  auto r = Parse(std::string(kMinimal) + policy);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? **r : inference::ModelConfig();
}

TEST(Versions, Policies) {
  const std::vector<int64_t> available = {1, 2, 3, 10};
  auto latest1 = SelectVersions(WithPolicy(""), available);
  ASSERT_TRUE(latest1.ok());
  EXPECT_EQ(*latest1, (std::vector<int64_t>{10}));
  auto latest2 =
      SelectVersions(WithPolicy("version_policy { latest { num_versions: 2 } }"), {10, 1, 3, 2});
  ASSERT_TRUE(latest2.ok());
  EXPECT_EQ(*latest2, (std::vector<int64_t>{3, 10}));
  auto latest9 =
      SelectVersions(WithPolicy("version_policy { latest { num_versions: 9 } }"), available);
  ASSERT_TRUE(latest9.ok());
  EXPECT_EQ(*latest9, available);
  auto all = SelectVersions(WithPolicy("version_policy { all { } }"), available);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, available);
  auto specific =
      SelectVersions(WithPolicy("version_policy { specific { versions: [ 3, 1 ] } }"), available);
  ASSERT_TRUE(specific.ok());
  EXPECT_EQ(*specific, (std::vector<int64_t>{1, 3}));
}

TEST(Versions, Errors) {
  auto missing =
      SelectVersions(WithPolicy("version_policy { specific { versions: [ 1, 7, 8 ] } }"), {1, 2});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("version(s) 7, 8"), std::string::npos)
      << missing.status().message();
  auto none = SelectVersions(WithPolicy(""), {});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no version folders"), std::string::npos)
      << none.status().message();
}

TEST(Repository, ScanStrictAndDuplicates) {
  TempDir a, b;
  a.Write("alpha/config.pbtxt", "backend: \"identity\"");
  a.Write("shared/config.pbtxt", "backend: \"identity\"");
  a.Mkdir("no_config/1");
  a.Mkdir(".hidden");
  a.Write("README", "not a model");
  b.Write("beta/config.pbtxt", "backend: \"identity\"");
  b.Write("shared/config.pbtxt", "backend: \"identity\"");

  auto strict = ScanRepositories({a.path().string(), b.path().string()}, true);
  EXPECT_TRUE(strict.error.ok());
  ASSERT_EQ(strict.models.size(), 2u);
  EXPECT_EQ(strict.models[0].name, "alpha");
  EXPECT_EQ(strict.models[0].path, (a.path() / "alpha").string());
  EXPECT_EQ(strict.models[1].name, "beta");
  ASSERT_EQ(strict.errors.count("shared"), 1u);
  EXPECT_NE(strict.errors.at("shared").message().find(a.path().string()), std::string::npos);
  EXPECT_NE(strict.errors.at("shared").message().find(b.path().string()), std::string::npos);

  auto loose = ScanRepositories({a.path().string(), b.path().string()}, false);
  ASSERT_EQ(loose.models.size(), 3u);
  EXPECT_EQ(loose.models[2].name, "no_config");
}

TEST(Repository, MissingRepositoryPath) {
  TempDir a;
  a.Write("alpha/config.pbtxt", "backend: \"identity\"");
  std::string missing = (a.path() / "nope").string();
  auto scan = ScanRepositories({missing, a.path().string()}, true);
  ASSERT_FALSE(scan.error.ok());
  EXPECT_NE(scan.error.message().find(missing), std::string::npos);
  EXPECT_EQ(scan.models.size(), 1u);
}

TEST(Repository, LoadModelConfigFromDisk) {
  TempDir t;
  t.Write("m/config.pbtxt", kMinimal);
  auto r = LoadModelConfig({"m", (t.path() / "m").string()}, true);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->backend(), "identity");

  t.Write("bad/config.pbtxt", "name: \"bad\"\nbackend: \"identity\"\nmax_batch_size: -4\n");
  auto bad = LoadModelConfig({"bad", (t.path() / "bad").string()}, true);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "bad/config.pbtxt:3:1: max_batch_size: must be >= 0, got -4");
}

TEST(Repository, StrictRequiresConfigAndTensors) {
  TempDir t;
  t.Mkdir("noconf/1");
  auto missing = LoadModelConfig({"noconf", (t.path() / "noconf").string()}, true);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  t.Write("notensors/config.pbtxt", "backend: \"identity\"");
  auto strict = LoadModelConfig({"notensors", (t.path() / "notensors").string()}, true);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find("at least one input and one output"), std::string::npos);
  auto loose = LoadModelConfig({"notensors", (t.path() / "notensors").string()}, false);
  EXPECT_TRUE(loose.ok()) << loose.status().message();
}

TEST(Repository, AutoCompleteBackendFromModelFile) {
  TempDir t;
  t.Write("torchy/1/model.pt", "weights");
  auto r = LoadModelConfig({"torchy", (t.path() / "torchy").string()}, false);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->name(), "torchy");
  EXPECT_EQ((*r)->backend(), "pytorch");
  EXPECT_EQ((*r)->platform(), "pytorch_libtorch");

  t.Mkdir("empty/1");
  auto none = LoadModelConfig({"empty", (t.path() / "empty").string()}, false);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no 'backend'"), std::string::npos);
}

TEST(Repository, LabelFiles) {
  TempDir t;
  std::string config = std::string(kMinimal);
  config.replace(config.find("dims: [ 4 ] } ]\n", config.find("OUT")), 15,
                 "dims: [ 4 ] label_filename: \"labels.txt\" } ]");
  t.Write("m/config.pbtxt", config);
  auto missing = LoadModelConfig({"m", (t.path() / "m").string()}, true);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("output[0].label_filename: 'labels.txt'"),
            std::string::npos)
      << missing.status().message();

  t.Write("m/labels.txt", "cat\r\ndog\r\n\r\nbird");
  EXPECT_TRUE(LoadModelConfig({"m", (t.path() / "m").string()}, true).ok());
  auto labels = LoadLabels((t.path() / "m").string(), "labels.txt");
  ASSERT_TRUE(labels.ok());
  EXPECT_EQ(*labels, (std::vector<std::string>{"cat", "dog", "", "bird"}));
  auto nofile = LoadLabels((t.path() / "m").string(), "other.txt");
  ASSERT_FALSE(nofile.ok());
  EXPECT_EQ(nofile.status().code(), StatusCode::kNotFound);
  EXPECT_NE(nofile.status().message().find((t.path() / "m" / "other.txt").string()),
            std::string::npos);
}

}  // namespace
}  // namespace flowserve
