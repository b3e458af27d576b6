#include "fuzz/inprocess_server.h"

#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <string>

#include "backends/identity/identity_backend.h"

namespace flowserve::fuzz {
namespace {

// Models that reach the interesting corners: variable shapes and batching, BYTES,
// several inputs of different widths, reshape, and a dynamic batcher with a queue.
constexpr const char* kModels[][2] = {
    {"simple",
     "backend: \"identity\" max_batch_size: 8\n"
     "input [{ name: \"INPUT0\" data_type: TYPE_FP32 dims: [ -1 ] }]\n"
     "output [{ name: \"OUTPUT0\" data_type: TYPE_FP32 dims: [ -1 ] }]\n"},
    {"bytes",
     "backend: \"identity\" max_batch_size: 0\n"
     "input [{ name: \"INPUT0\" data_type: TYPE_STRING dims: [ -1 ] }]\n"
     "output [{ name: \"OUTPUT0\" data_type: TYPE_STRING dims: [ -1 ] }]\n"},
    {"multi",
     "backend: \"identity\" max_batch_size: 0\n"
     "input [{ name: \"A\" data_type: TYPE_INT32 dims: [ 2, 2 ] },\n"
     "       { name: \"B\" data_type: TYPE_UINT8 dims: [ 4 ] reshape: { shape: [ 2, 2 ] } },\n"
     "       { name: \"C\" data_type: TYPE_BOOL dims: [ -1 ] optional: true }]\n"
     "output [{ name: \"A_OUT\" data_type: TYPE_INT32 dims: [ 2, 2 ] },\n"
     "        { name: \"B_OUT\" data_type: TYPE_UINT8 dims: [ 2, 2 ] label_filename: "
     "\"labels.txt\" }]\n"},
    {"batched",
     "backend: \"identity\" max_batch_size: 4\n"
     "input [{ name: \"INPUT0\" data_type: TYPE_INT64 dims: [ 3 ] }]\n"
     "output [{ name: \"OUTPUT0\" data_type: TYPE_INT64 dims: [ 3 ] }]\n"
     "dynamic_batching { preferred_batch_size: [ 2 ] max_queue_delay_microseconds: 100\n"
     "  default_queue_policy { max_queue_size: 8 allow_timeout_override: true } }\n"},
    // Last: an ensemble loads after the models it is made of.
    {"pipeline",
     "platform: \"ensemble\" max_batch_size: 8\n"
     "input [{ name: \"IN\" data_type: TYPE_FP32 dims: [ -1 ] }]\n"
     "output [{ name: \"OUT\" data_type: TYPE_FP32 dims: [ -1 ] }]\n"
     "ensemble_scheduling { step [{ model_name: \"simple\" model_version: -1\n"
     "  input_map { key: \"INPUT0\" value: \"IN\" }\n"
     "  output_map { key: \"OUTPUT0\" value: \"OUT\" } }] }\n"},
};

// The temporary directory: models/ (the repository) and whatever else a target needs.
const std::string& Root() {
  // Never destroyed: the exit handler below still needs it after static destructors ran.
  static const std::string* root = [] {
    char tmpl[] = "/tmp/flowserve-fuzz-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    auto* dir = new std::string(tmpl);
    std::atexit([] { std::filesystem::remove_all(Root()); });  // a crash leaves it behind
    return dir;
  }();
  return *root;
}

std::string MakeRepository() {
  namespace fs = std::filesystem;
  const fs::path repo = fs::path(Root()) / "models";
  for (const auto& [name, config] : kModels) {
    fs::create_directories(repo / name / "1");
    std::ofstream(repo / name / "config.pbtxt") << config;
    std::ofstream(repo / name / "labels.txt") << "a\nb\nc\nd\n";
  }
  return repo;
}

// What each model served right after start-up; weak, so that holding it never delays an
// unload.
std::map<std::string, std::weak_ptr<ModelVersion>>& Baseline() {
  static std::map<std::string, std::weak_ptr<ModelVersion>> baseline;
  return baseline;
}

void RecordBaseline(const InferenceServer& server, const std::string& name) {
  auto model = server.GetModel(name, -1);
  Baseline()[name] = model.ok() ? model.value() : nullptr;
}

}  // namespace

void QuietLogs() { spdlog::set_level(spdlog::level::off); }

InferenceServer& Server() {
  static InferenceServer* server = [] {
    QuietLogs();
    RegisterIdentityBackend();
    ServerOptions options;
    options.model_repositories = {MakeRepository()};
    // Explicit control, everything loaded: the repository routes can unload and load.
    options.model_control_mode = "explicit";
    options.startup_models = {"*"};
    auto created = InferenceServer::Create(options);
    if (!created.ok() || created.value()->AnyModelFailed()) {
      std::fprintf(stderr, "fuzz: cannot start the in-process server\n");
      std::abort();
    }
    for (const auto& [name, config] : kModels) RecordBaseline(*created.value(), name);
    return created.value().release();  // lives as long as the process
  }();
  return *server;
}

const std::string& TempDir() { return Root(); }

void RestoreModels() {
  for (const auto& [name, config] : kModels) {
    auto now = Server().GetModel(name, -1);
    std::shared_ptr<ModelVersion> was = Baseline()[name].lock();
    if (was && now.ok() && now.value() == was) continue;
    Status st = Server().LoadModel(name, "");
    if (!st.ok()) {
      std::fprintf(stderr, "fuzz: cannot restore model '%s': %s\n", name, st.message().c_str());
      std::abort();
    }
    RecordBaseline(Server(), name);
  }
}

std::unique_ptr<InferenceResponse> InferSync(std::unique_ptr<InferenceRequest> request) {
  std::promise<std::unique_ptr<InferenceResponse>> done;
  auto answer = done.get_future();
  request->on_complete = [&done](std::unique_ptr<InferenceResponse> r) {
    done.set_value(std::move(r));
  };
  Server().Infer(std::move(request));
  return answer.get();
}

}  // namespace flowserve::fuzz
