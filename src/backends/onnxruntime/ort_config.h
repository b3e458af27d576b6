#pragma once
// The config.pbtxt <-> ONNX model contract: Triton's auto-complete (fill in what the
// config leaves out from what the session declares) and the check that what the config
// does say agrees with the model. Free of ONNX Runtime calls: it works on SessionIo.
#include <string>

#include "backends/onnxruntime/ort_runtime.h"
#include "common/status.h"

namespace inference {
class ModelConfig;
}

namespace flowserve::onnxruntime {

// Fills inputs (every required one the config leaves out), outputs (all of them when the
// config lists none), data types and dims the config leaves empty, max_batch_size (when 0,
// the model batches and the config does not say otherwise: `default_max_batch_size`) and
// a default dynamic_batching when max_batch_size > 1 and no scheduler is set. Then checks
// the result with CheckConfig.
Status CompleteConfig(inference::ModelConfig& config, const SessionIo& model,
                      int default_max_batch_size, const std::string& file);

// Fails, naming the tensor, both values and `file`, where the config contradicts the
// model: an unknown input or output, a data type, a dim, a batch dim the model lacks, a
// required model input the config leaves out.
Status CheckConfig(const inference::ModelConfig& config, const SessionIo& model,
                   const std::string& file);

}  // namespace flowserve::onnxruntime
