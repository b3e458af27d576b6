// JSON documents of the HTTP frontend's metadata, statistics, repository and logging
// endpoints, in the shapes tritonclient parses.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "frontends/http/model_json.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

rapidjson::Document ParseJson(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.data(), s.size());
  EXPECT_FALSE(d.HasParseError()) << s;
  return d;
}

std::shared_ptr<ModelVersion> MakeModel(int max_batch_size, const std::string& platform) {
  auto config = std::make_shared<inference::ModelConfig>();
  config->set_name("m");
  config->set_backend("identity");
  config->set_platform(platform);
  config->set_max_batch_size(max_batch_size);
  auto* in = config->add_input();
  in->set_name("IN");
  in->set_data_type(inference::TYPE_INT16);
  in->add_dims(3);
  in->add_dims(-1);
  auto* out = config->add_output();
  out->set_name("OUT");
  out->set_data_type(inference::TYPE_STRING);
  out->add_dims(1);
  return std::make_shared<ModelVersion>("m", 4, config, "/nowhere");
}

TEST(HttpModelJson, ServerMetadata) {
  auto d = ParseJson(ServerMetadataJson("my-id"));
  EXPECT_STREQ(d["name"].GetString(), "my-id");
  EXPECT_STREQ(d["version"].GetString(), kServerVersion);
  ASSERT_TRUE(d["extensions"].IsArray());
  bool binary = false;
  for (const auto& e : d["extensions"].GetArray())
    binary |= std::string(e.GetString()) == "binary_tensor_data";
  EXPECT_TRUE(binary);
}

TEST(HttpModelJson, MetadataAddsBatchDimension) {
  auto batched = ParseJson(ModelMetadataJson(*MakeModel(8, ""), {1, 4}));
  EXPECT_STREQ(batched["name"].GetString(), "m");
  EXPECT_STREQ(batched["versions"][0].GetString(), "1");
  EXPECT_STREQ(batched["versions"][1].GetString(), "4");
  EXPECT_STREQ(batched["platform"].GetString(), "identity");  // no platform: the backend
  const auto& in = batched["inputs"][0];
  EXPECT_STREQ(in["name"].GetString(), "IN");
  EXPECT_STREQ(in["datatype"].GetString(), "INT16");
  ASSERT_EQ(in["shape"].Size(), 3u);
  EXPECT_EQ(in["shape"][0].GetInt(), -1);
  EXPECT_EQ(in["shape"][1].GetInt(), 3);
  EXPECT_EQ(in["shape"][2].GetInt(), -1);
  EXPECT_STREQ(batched["outputs"][0]["datatype"].GetString(), "BYTES");

  auto plain = ParseJson(ModelMetadataJson(*MakeModel(0, "pytorch_libtorch"), {4}));
  EXPECT_STREQ(plain["platform"].GetString(), "pytorch_libtorch");
  EXPECT_EQ(plain["inputs"][0]["shape"].Size(), 2u);
  EXPECT_EQ(plain["outputs"][0]["shape"][0].GetInt(), 1);
}

TEST(HttpModelJson, StatisticsShape) {
  auto m = MakeModel(8, "");
  m->stats().success.Add(1000, 2);
  m->stats().queue.Add(300, 2);
  m->stats().inference_count = 5;
  m->stats().execution_count = 2;
  m->stats().last_inference_ms = 1700000000000ull;
  m->stats().RecordBatch(4, 10, 20, 30);
  m->stats().RecordBatch(4, 1, 2, 3);
  m->stats().RecordBatch(1, 1, 1, 1);
  auto d = ParseJson(ModelStatsJson({m}));
  const auto& s = d["model_stats"][0];
  EXPECT_STREQ(s["name"].GetString(), "m");
  EXPECT_STREQ(s["version"].GetString(), "4");
  EXPECT_EQ(s["last_inference"].GetUint64(), 1700000000000ull);
  EXPECT_EQ(s["inference_count"].GetInt(), 5);
  EXPECT_EQ(s["execution_count"].GetInt(), 2);
  const auto& is = s["inference_stats"];
  EXPECT_EQ(is["success"]["count"].GetInt(), 2);
  EXPECT_EQ(is["success"]["ns"].GetInt(), 1000);
  EXPECT_EQ(is["queue"]["ns"].GetInt(), 300);
  for (const char* k :
       {"fail", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss"}) {
    EXPECT_EQ(is[k]["count"].GetInt(), 0) << k;
  }
  const auto& bs = s["batch_stats"];
  ASSERT_EQ(bs.Size(), 2u);
  EXPECT_EQ(bs[0]["batch_size"].GetInt(), 1);
  EXPECT_EQ(bs[1]["batch_size"].GetInt(), 4);
  EXPECT_EQ(bs[1]["compute_infer"]["count"].GetInt(), 2);
  EXPECT_EQ(bs[1]["compute_infer"]["ns"].GetInt(), 22);
  EXPECT_EQ(bs[1]["compute_output"]["ns"].GetInt(), 33);
  EXPECT_EQ(ParseJson(ModelStatsJson({}))["model_stats"].Size(), 0u);
}

TEST(HttpModelJson, RepositoryIndex) {
  auto d = ParseJson(RepositoryIndexJson(
      {{"a", "1", "READY", ""}, {"b", "", "UNAVAILABLE", "config.pbtxt:3: bad"}}));
  ASSERT_EQ(d.Size(), 2u);
  EXPECT_STREQ(d[0]["version"].GetString(), "1");
  EXPECT_FALSE(d[0].HasMember("reason"));
  EXPECT_FALSE(d[1].HasMember("version"));
  EXPECT_STREQ(d[1]["state"].GetString(), "UNAVAILABLE");
  EXPECT_STREQ(d[1]["reason"].GetString(), "config.pbtxt:3: bad");
}

TEST(HttpModelJson, RequestBodies) {
  EXPECT_FALSE(ParseIndexReadyOnly("").value());
  EXPECT_TRUE(ParseIndexReadyOnly(R"({"ready": true})").value());
  EXPECT_FALSE(ParseIndexReadyOnly(R"({"ready": 1})").ok());
  EXPECT_FALSE(ParseIndexReadyOnly("{").ok());
  EXPECT_EQ(ParseLoadRequest("")->config_json, "");
  EXPECT_EQ(ParseLoadRequest(R"({"parameters":{"config":"{\"a\":1}"}})")->config_json, "{\"a\":1}");
  EXPECT_FALSE(ParseLoadRequest(R"({"parameters":{"config":{}}})").ok());
  EXPECT_FALSE(ParseLoadRequest(R"({"parameters":{"file:1/model.pt":"AAAA"}})").ok());
  EXPECT_TRUE(ParseUnloadDependents(R"({"parameters":{"unload_dependents":true}})").value());
  EXPECT_FALSE(ParseUnloadDependents("{}").value());
  EXPECT_FALSE(ParseUnloadDependents(R"({"parameters":{"unload_dependents":"yes"}})").ok());
}

TEST(HttpModelJson, LogSettings) {
  LogSettings s;
  auto d = ParseJson(LogSettingsJson(s));
  EXPECT_TRUE(d["log_info"].GetBool());
  EXPECT_EQ(d["log_verbose_level"].GetInt(), 0);
  EXPECT_STREQ(d["log_format"].GetString(), "default");
  EXPECT_TRUE(UpdateLogSettings(R"({"log_verbose_level":2,"log_info":false})", &s).ok());
  EXPECT_EQ(s.verbose, 2);
  EXPECT_FALSE(s.info);
  LogSettings before = s;
  EXPECT_FALSE(UpdateLogSettings(R"({"log_format":"xml"})", &s).ok());
  EXPECT_FALSE(UpdateLogSettings(R"({"log_info":true,"nope":1})", &s).ok());
  EXPECT_TRUE(s.info == before.info);  // nothing applied on error
}

}  // namespace
}  // namespace flowserve
