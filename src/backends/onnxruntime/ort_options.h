#pragma once
// What an onnxruntime model's config.pbtxt, the --backend-config flags and the version
// folder ask for, decided before any ONNX Runtime call: which file, which session options,
// how many threads, whether instances share one session.
#include <map>
#include <optional>
#include <string>

#include "backends/backend.h"
#include "common/status.h"

namespace inference {
class ModelConfig;
}

namespace flowserve::onnxruntime {

enum class GraphLevel { kDisableAll, kBasic, kExtended, kAll };

struct OrtOptions {
  std::string model_path;
  int intra_op_threads = 1;  // per session; never 0 (ORT's 0 would mean every core)
  int inter_op_threads = 0;  // 0: ORT's default; only used in parallel execution mode
  bool parallel_execution = false;
  GraphLevel graph_level = GraphLevel::kAll;
  bool enable_mem_arena = true;
  bool enable_mem_pattern = true;
  // Instances run on one session (Run is thread-safe) instead of one session each.
  bool share_session = false;
  // Passed through: parameters named "session.*" (session config entries) and
  // "memory.*" (run config entries, e.g. memory.enable_memory_arena_shrinkage).
  std::map<std::string, std::string> session_entries;
  std::map<std::string, std::string> run_entries;
};

// The model file in `version_dir`: `default_model_filename`, else model.onnx, else
// OneFlow's `model` entry; a folder named so is searched for model.onnx inside.
Result<std::string> FindModelFile(const std::string& version_dir,
                                  const std::string& default_model_filename);

// Reads `parameters`, `optimization.graph.level` and --backend-config=onnxruntime,...
Result<OrtOptions> ResolveOptions(const ModelLoadContext& ctx);

// --backend-config=onnxruntime,default-max-batch-size=<n> (Triton's default: 4).
Result<int> DefaultMaxBatchSize(const std::map<std::string, std::string>& backend_config);

std::string GraphLevelName(GraphLevel level);

}  // namespace flowserve::onnxruntime
