#include "backends/pytorch/pytorch_options.h"

#include <algorithm>

#include "backends/backend_support.h"
#include "model_config.pb.h"

namespace flowserve::pytorch {

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
      auto n = ParseIntParameter(key, v, 0);
      if (!n.ok()) return n.status();
      if (*n > 0) {
        o.intra_op_threads = *n;
        o.intra_from_config = true;
      }
    } else if (key == "INTER_OP_THREAD_COUNT") {
      auto n = ParseIntParameter(key, v, 0);
      if (!n.ok()) return n.status();
      o.inter_op_threads = *n;
    } else if (key == "DISABLE_OPTIMIZED_EXECUTION") {
      auto b = ParseBoolParameter(key, v);
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
    o.intra_op_threads = ThreadsPerInstance(ctx.total_instance_count);
  }

  auto path =
      FindModelFile(ctx.version_dir, cfg.default_model_filename(), "model.pt", "TorchScript");
  if (!path.ok()) return path.status();
  o.model_path = *path;
  return o;
}

}  // namespace flowserve::pytorch
