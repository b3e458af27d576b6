#include "backends/onnxruntime/ort_options.h"

#include <algorithm>

#include "backends/backend_support.h"
#include "model_config.pb.h"

namespace flowserve::onnxruntime {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Triton's optimization.graph.level: 0 (unset) all, -1 basic, 1 basic + extended,
// 2 none.
Result<GraphLevel> TritonGraphLevel(int level) {
  switch (level) {
    case 0:
      return GraphLevel::kAll;
    case -1:
      return GraphLevel::kBasic;
    case 1:
      return GraphLevel::kExtended;
    case 2:
      return GraphLevel::kDisableAll;
    default:
      return InvalidArgument("optimization.graph.level " + std::to_string(level) +
                             " is not one of -1 (basic), 1 (basic and extended), 2 (disabled) "
                             "or 0/unset (all)");
  }
}

// The parameter form takes ORT's own names or numbers (0, 1, 2, 99).
Result<GraphLevel> NamedGraphLevel(const std::string& key, const std::string& value) {
  std::string v = Lower(value);
  if (v == "disable_all" || v == "disable" || v == "none" || v == "0")
    return GraphLevel::kDisableAll;
  if (v == "basic" || v == "enable_basic" || v == "1") return GraphLevel::kBasic;
  if (v == "extended" || v == "enable_extended" || v == "2") return GraphLevel::kExtended;
  if (v == "all" || v == "enable_all" || v == "99") return GraphLevel::kAll;
  return InvalidArgument("parameter " + key +
                         " must be disable_all, basic, extended or all, got '" + value + "'");
}

}  // namespace

std::string GraphLevelName(GraphLevel level) {
  switch (level) {
    case GraphLevel::kDisableAll:
      return "disabled";
    case GraphLevel::kBasic:
      return "basic";
    case GraphLevel::kExtended:
      return "extended";
    case GraphLevel::kAll:
      return "all";
  }
  return "?";
}

Result<std::string> FindModelFile(const std::string& version_dir,
                                  const std::string& default_model_filename) {
  return flowserve::FindModelFile(version_dir, default_model_filename, "model.onnx", "ONNX");
}

Result<int> DefaultMaxBatchSize(const std::map<std::string, std::string>& backend_config) {
  auto it = backend_config.find("default-max-batch-size");
  if (it == backend_config.end()) return 4;
  return ParseIntParameter("default-max-batch-size (--backend-config)", it->second, 0);
}

Result<OrtOptions> ResolveOptions(const ModelLoadContext& ctx) {
  const auto& cfg = *ctx.config;
  OrtOptions o;

  for (const auto& g : cfg.instance_group()) {
    if (g.kind() == inference::ModelInstanceGroup::KIND_GPU) {
      return Unavailable("instance_group '" + g.name() +
                         "' asks for KIND_GPU, but this flowserve's ONNX Runtime is a CPU build; "
                         "use KIND_CPU or KIND_AUTO");
    }
  }

  // --backend-config=onnxruntime,intra_op_thread_count=N (and inter_) set defaults for
  // every model; a model's own parameters win.
  std::optional<int> intra;
  auto read_count = [&](const std::string& key, const std::string& value, auto& slot) -> Status {
    auto n = ParseIntParameter(key, value, 0);
    if (!n.ok()) return n.status();
    slot = *n;
    return Status::Ok();
  };
  for (const auto& [key, value] : ctx.backend_config) {
    std::string k = Lower(key);
    if (k == "intra_op_thread_count") {
      FS_RETURN_IF_ERROR(read_count(key, value, intra));
    } else if (k == "inter_op_thread_count") {
      FS_RETURN_IF_ERROR(read_count(key, value, o.inter_op_threads));
    }
  }

  if (cfg.has_optimization() && cfg.optimization().has_graph()) {
    auto level = TritonGraphLevel(cfg.optimization().graph().level());
    if (!level.ok()) return level.status();
    o.graph_level = *level;
  }

  std::optional<bool> share;
  for (const auto& [key, param] : cfg.parameters()) {
    const std::string& v = param.string_value();
    const std::string k = Lower(key);
    if (k == "intra_op_thread_count") {
      FS_RETURN_IF_ERROR(read_count(key, v, intra));
    } else if (k == "inter_op_thread_count") {
      FS_RETURN_IF_ERROR(read_count(key, v, o.inter_op_threads));
    } else if (k == "execution_mode") {
      std::string m = Lower(v);
      if (m == "0" || m == "sequential") {
        o.parallel_execution = false;
      } else if (m == "1" || m == "parallel") {
        o.parallel_execution = true;
      } else {
        return InvalidArgument(
            "parameter execution_mode must be 0 (sequential) or 1 (parallel), "
            "got '" +
            v + "'");
      }
    } else if (k == "graph_optimization_level" || k == "optimization_level") {
      auto level = NamedGraphLevel(key, v);
      if (!level.ok()) return level.status();
      o.graph_level = *level;
    } else if (k == "enable_mem_arena") {
      auto b = ParseBoolParameter(key, v);
      if (!b.ok()) return b.status();
      o.enable_mem_arena = *b;
    } else if (k == "enable_mem_pattern") {
      auto b = ParseBoolParameter(key, v);
      if (!b.ok()) return b.status();
      o.enable_mem_pattern = *b;
    } else if (k == "share_session_between_instances" || k == "share_session") {
      auto b = ParseBoolParameter(key, v);
      if (!b.ok()) return b.status();
      share = *b;
    } else if (key.rfind("session.", 0) == 0) {
      o.session_entries[key] = v;
    } else if (key.rfind("memory.", 0) == 0) {
      o.run_entries[key] = v;
    }
    // Other keys belong to other tools (TensorRT/CUDA options and the like); they are
    // ignored rather than failing a config that works elsewhere.
  }

  // ORT's default (0) gives every session every core; instances running at the same time
  // then fight over them. Each instance gets its share instead.
  const int instances = std::max(1, ctx.total_instance_count);
  o.intra_op_threads = intra.value_or(0) > 0 ? *intra : ThreadsPerInstance(instances);
  // With one intra-op thread a Run executes on the calling (instance) thread alone, so
  // instances can share one session, and one copy of the weights, without contending for
  // a pool. With a pool per instance, each needs its own session.
  o.share_session = share.value_or(o.intra_op_threads == 1 && !o.parallel_execution);

  auto path = FindModelFile(ctx.version_dir, cfg.default_model_filename());
  if (!path.ok()) return path.status();
  o.model_path = *path;
  return o;
}

}  // namespace flowserve::onnxruntime
