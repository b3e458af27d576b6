#pragma once
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "core/inference_request.h"

namespace flowserve {

struct InferenceResponse {
  Status status;
  std::string model_name;
  int64_t model_version = 0;
  std::string id;
  std::vector<Tensor> outputs;
  Parameters parameters;
  // Decoupled models answer a request with any number of responses; only the last one
  // is final. A final response may carry nothing (the model sent the flag alone).
  bool final = true;
  bool flag_only = false;

  Tensor* FindOutput(const std::string& name) {
    for (auto& t : outputs)
      if (t.name == name) return &t;
    return nullptr;
  }
};

}  // namespace flowserve
