#pragma once
// What a pytorch model's config.pbtxt and version folder ask for, decided before any
// LibTorch call: which file to load, how to optimize it, how many threads to use.
#include <string>

#include "backends/backend.h"
#include "common/status.h"

namespace flowserve::pytorch {

struct PytorchOptions {
  std::string model_path;    // the TorchScript file to load
  bool optimize = true;      // freeze + optimize_for_inference at load
  int intra_op_threads = 1;  // per instance
  int inter_op_threads = 0;  // 0: LibTorch's default (process-wide, set once)
  bool intra_from_config = false;
  std::string xrt;  // OneFlow Serving's accelerator key, as given
};

// Reads `parameters` (INTRA_OP_THREAD_COUNT, INTER_OP_THREAD_COUNT,
// DISABLE_OPTIMIZED_EXECUTION, xrt), `instance_group` kinds, and finds the model file.
Result<PytorchOptions> ResolveOptions(const ModelLoadContext& ctx, bool cuda_available);

}  // namespace flowserve::pytorch
