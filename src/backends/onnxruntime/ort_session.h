#pragma once
// Opening an ONNX Runtime session the way the backend (and tools/onnx_raw_bench, its
// baseline) does: the options resolved from the config, turned into SessionOptions.
#include <memory>

#include "backends/onnxruntime/ort_options.h"
#include "backends/onnxruntime/ort_runtime.h"
#include "common/status.h"

namespace flowserve::onnxruntime {

// Threads, execution mode, graph optimization, arena, memory pattern and the pass-through
// session entries. Throws Ort::Exception.
Ort::SessionOptions MakeSessionOptions(const OrtOptions& options);

// Loads options.model_path; `prepacked` (may be null) lets sessions of one model share
// their pre-packed weights. A file ORT cannot load is an InvalidArgument with ORT's reason.
Result<std::shared_ptr<Ort::Session>> OpenSession(const OrtOptions& options,
                                                  OrtPrepackedWeightsContainer* prepacked);

}  // namespace flowserve::onnxruntime
