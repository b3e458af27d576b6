#include "backends/onnxruntime/ort_session.h"

namespace flowserve::onnxruntime {

Ort::SessionOptions MakeSessionOptions(const OrtOptions& o) {
  Ort::SessionOptions so;
  so.SetIntraOpNumThreads(o.intra_op_threads);
  so.SetInterOpNumThreads(o.inter_op_threads);
  so.SetExecutionMode(o.parallel_execution ? ORT_PARALLEL : ORT_SEQUENTIAL);
  switch (o.graph_level) {
    case GraphLevel::kDisableAll:
      so.SetGraphOptimizationLevel(ORT_DISABLE_ALL);
      break;
    case GraphLevel::kBasic:
      so.SetGraphOptimizationLevel(ORT_ENABLE_BASIC);
      break;
    case GraphLevel::kExtended:
      so.SetGraphOptimizationLevel(ORT_ENABLE_EXTENDED);
      break;
    case GraphLevel::kAll:
      so.SetGraphOptimizationLevel(ORT_ENABLE_ALL);
      break;
  }
  if (o.enable_mem_arena) {
    so.EnableCpuMemArena();
  } else {
    so.DisableCpuMemArena();
  }
  if (o.enable_mem_pattern) {
    so.EnableMemPattern();
  } else {
    so.DisableMemPattern();
  }
  for (const auto& [k, v] : o.session_entries) so.AddConfigEntry(k.c_str(), v.c_str());
  return so;
}

Result<std::shared_ptr<Ort::Session>> OpenSession(const OrtOptions& o,
                                                  OrtPrepackedWeightsContainer* prepacked) {
  try {
    Ort::SessionOptions so = MakeSessionOptions(o);
    if (prepacked != nullptr) {
      return std::make_shared<Ort::Session>(OrtEnv(), o.model_path.c_str(), so, prepacked);
    }
    return std::make_shared<Ort::Session>(OrtEnv(), o.model_path.c_str(), so);
  } catch (const std::exception& e) {
    return InvalidArgument("cannot load ONNX model " + o.model_path + ": " + ExceptionText(e));
  }
}

}  // namespace flowserve::onnxruntime
