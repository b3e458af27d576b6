// Reads a model directory's config.pbtxt (or, without strict_model_config, makes one up
// from the folder) and checks what the config points at on disk.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model_config.pb.h"
#include "repository/config_internal.h"
#include "repository/model_repository.h"

namespace flowserve {
namespace {

namespace fs = std::filesystem;

// Default model file names per backend, used to guess the backend of a model that has
// no config.pbtxt or leaves backend and platform out.
struct FileBackend {
  const char* file;
  const char* backend;
};
constexpr FileBackend kDefaultFiles[] = {
    {"model.pt", "pytorch"},          {"model.onnx", "onnxruntime"},
    {"model.plan", "tensorrt"},       {"model.savedmodel", "tensorflow"},
    {"model.graphdef", "tensorflow"}, {"model.py", "python"},
};

}  // namespace

std::string GuessBackendFromFiles(const std::string& model_dir) {
  for (int64_t version : ListVersions(model_dir)) {
    fs::path dir = fs::path(model_dir) / std::to_string(version);
    for (const auto& f : kDefaultFiles) {
      std::error_code ec;
      if (fs::exists(dir / f.file, ec)) return f.backend;
    }
  }
  return "";
}

namespace {

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Result<std::shared_ptr<inference::ModelConfig>> LoadModelConfig(const ModelDirectory& dir,
                                                                bool strict_model_config) {
  const fs::path file = fs::path(dir.path) / "config.pbtxt";
  const std::string source = dir.name + "/config.pbtxt";
  std::error_code ec;
  std::string text;
  if (fs::exists(file, ec)) {
    auto read = ReadFile(file);
    if (!read.ok()) return read.status();
    text = std::move(read).value();
  } else if (strict_model_config) {
    return NotFound("model '" + dir.name + "' has no config.pbtxt in " + dir.path +
                    " (required with --strict-model-config=true)");
  }

  // Without strict_model_config a config may leave the backend to the model file.
  auto parsed = config_internal::ParseModelConfigText(
      text, source, dir.name, strict_model_config ? "" : GuessBackendFromFiles(dir.path));
  if (!parsed.ok()) return parsed.status();
  std::shared_ptr<inference::ModelConfig> config = parsed.value();

  if (strict_model_config && config->platform() != "ensemble" &&
      (config->input_size() == 0 || config->output_size() == 0)) {
    return InvalidArgument(source + ": model '" + dir.name +
                           "' must declare at least one input and one output "
                           "(required with --strict-model-config=true)");
  }
  for (int i = 0; i < config->output_size(); ++i) {
    const auto& out = config->output(i);
    if (out.label_filename().empty()) continue;
    if (!fs::exists(fs::path(dir.path) / out.label_filename(), ec)) {
      return InvalidArgument(source + ": output[" + std::to_string(i) + "].label_filename: '" +
                             out.label_filename() + "' of output '" + out.name() +
                             "' does not exist in " + dir.path);
    }
  }
  return config;
}

}  // namespace flowserve
