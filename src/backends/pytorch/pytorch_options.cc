#include "backends/pytorch/pytorch_options.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <optional>
#include <thread>

#include "model_config.pb.h"

namespace flowserve::pytorch {
namespace {

namespace fs = std::filesystem;

Result<int> ParseCount(const std::string& key, const std::string& value) {
  int n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size() || n < 0) {
    return InvalidArgument("parameter " + key + " must be a non-negative integer, got '" + value +
                           "'");
  }
  return n;
}

Result<bool> ParseBool(const std::string& key, const std::string& value) {
  std::string v = value;
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  return InvalidArgument("parameter " + key + " must be true or false, got '" + value + "'");
}

std::string ListFolder(const fs::path& dir) {
  std::string names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    names += (names.empty() ? "" : ", ") + e.path().filename().string();
    if (e.is_directory()) names += "/";
  }
  return names.empty() ? "nothing" : names;
}

// A path that is a file, or a folder holding model.pt (OneFlow Serving's `model` entry).
std::optional<fs::path> ModelFileAt(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return p;
  if (fs::is_directory(p, ec) && fs::is_regular_file(p / "model.pt", ec)) return p / "model.pt";
  return std::nullopt;
}

Result<std::string> FindModelFile(const ModelLoadContext& ctx) {
  const fs::path dir(ctx.version_dir);
  const std::string& configured = ctx.config->default_model_filename();
  std::vector<std::string> tried;
  if (!configured.empty()) {
    tried.push_back(configured);
  } else {
    tried = {"model.pt", "model"};
  }
  for (const auto& name : tried) {
    if (auto p = ModelFileAt(dir / name)) return p->string();
  }
  std::string looked;
  for (const auto& t : tried) looked += (looked.empty() ? "" : " or ") + t;
  return NotFound("no TorchScript model in " + dir.string() + ": looked for " + looked +
                  " (a file, or a folder holding model.pt); the folder holds " + ListFolder(dir));
}

}  // namespace

int UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

Result<PytorchOptions> ResolveOptions(const ModelLoadContext& ctx, bool cuda_available) {
  const auto& cfg = *ctx.config;
  PytorchOptions o;

  for (const auto& g : cfg.instance_group()) {
    if (g.kind() == inference::ModelInstanceGroup::KIND_GPU && !cuda_available) {
      return Unavailable("instance_group '" + g.name() +
                         "' asks for KIND_GPU, but this flowserve's LibTorch has no CUDA "
                         "support or no GPU is visible; use KIND_CPU or KIND_AUTO");
    }
  }

  for (const auto& [key, param] : cfg.parameters()) {
    const std::string& v = param.string_value();
    if (key == "INTRA_OP_THREAD_COUNT") {
      auto n = ParseCount(key, v);
      if (!n.ok()) return n.status();
      if (*n > 0) {
        o.intra_op_threads = *n;
        o.intra_from_config = true;
      }
    } else if (key == "INTER_OP_THREAD_COUNT") {
      auto n = ParseCount(key, v);
      if (!n.ok()) return n.status();
      o.inter_op_threads = *n;
    } else if (key == "DISABLE_OPTIMIZED_EXECUTION") {
      auto b = ParseBool(key, v);
      if (!b.ok()) return b.status();
      o.optimize = !*b;
    } else if (key == "xrt") {
      // OneFlow Serving's accelerator switch. On this CPU LibTorch, "openvino" (OneFlow's
      // CPU accelerator) maps to LibTorch's own CPU graph optimization (oneDNN);
      // "none" turns optimization off; TensorRT needs CUDA.
      o.xrt = v;
      if (v == "openvino" || v == "onednn" || v == "oneflow") {
        o.optimize = true;
      } else if (v == "none" || v.empty()) {
        o.optimize = false;
      } else if (v == "tensorrt") {
        return Unavailable(
            "parameter xrt='tensorrt' needs CUDA, which this flowserve's LibTorch lacks; use "
            "xrt 'openvino' or 'onednn' (CPU graph optimization) or 'none'");
      } else {
        return InvalidArgument("parameter xrt='" + v +
                               "' is not supported; accepted values: openvino, onednn, "
                               "oneflow (CPU graph optimization), none (no optimization), "
                               "tensorrt (needs CUDA)");
      }
    }
    // Other keys belong to other tools (Triton's ENABLE_* switches and the like); they are
    // ignored rather than failing a config that works elsewhere.
  }

  if (!o.intra_from_config) {
    // LibTorch's default would give every instance every core; instances running at the
    // same time then fight over them. Each instance gets its share instead.
    o.intra_op_threads = std::max(1, UsableCores() / std::max(1, ctx.total_instance_count));
  }

  auto path = FindModelFile(ctx);
  if (!path.ok()) return path.status();
  o.model_path = *path;
  return o;
}

}  // namespace flowserve::pytorch
