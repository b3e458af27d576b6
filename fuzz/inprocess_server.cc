#include "fuzz/inprocess_server.h"

#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
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
};

std::string MakeRepository() {
  char tmpl[] = "/tmp/flowserve-fuzz-XXXXXX";
  if (!mkdtemp(tmpl)) std::abort();
  namespace fs = std::filesystem;
  for (const auto& [name, config] : kModels) {
    fs::create_directories(fs::path(tmpl) / name / "1");
    std::ofstream(fs::path(tmpl) / name / "config.pbtxt") << config;
    std::ofstream(fs::path(tmpl) / name / "labels.txt") << "a\nb\nc\nd\n";
  }
  return tmpl;
}

}  // namespace

void QuietLogs() { spdlog::set_level(spdlog::level::off); }

InferenceServer& Server() {
  static InferenceServer* server = [] {
    QuietLogs();
    RegisterIdentityBackend();
    ServerOptions options;
    const std::string repo = MakeRepository();
    options.model_repositories = {repo};
    auto created = InferenceServer::Create(options);
    std::filesystem::remove_all(repo);  // loaded: the files are no longer needed
    if (!created.ok() || created.value()->AnyModelFailed()) {
      std::fprintf(stderr, "fuzz: cannot start the in-process server\n");
      std::abort();
    }
    return created.value().release();  // lives as long as the process
  }();
  return *server;
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
