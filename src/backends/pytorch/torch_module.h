#pragma once
// Turning a TorchScript file into a module ready to serve, and LibTorch <-> flowserve
// type mapping. Includes LibTorch: only this folder's .cc files may include it.
#include <torch/script.h>

#include <optional>
#include <string>
#include <vector>

#include "backends/pytorch/argument_binding.h"
#include "common/datatype.h"
#include "common/status.h"

namespace flowserve::pytorch {

struct LoadedModule {
  torch::jit::Module module;
  Signature signature;
  // Per forward argument: the schema's default, used for arguments no input binds to.
  std::vector<std::optional<c10::IValue>> defaults;
  std::string optimization;  // what was done at load, for the log
};

// Loads on CPU, reads forward's signature, and (optimize) freezes the module and runs
// optimize_for_inference. An optimization that fails falls back to the plain module.
Result<LoadedModule> LoadTorchModule(const std::string& path, bool optimize);

std::optional<at::ScalarType> ToTorchType(DataType dtype);
DataType FromTorchType(at::ScalarType type);

// Exception text without LibTorch's C++ backtrace.
std::string ExceptionText(const std::exception& e);

}  // namespace flowserve::pytorch
