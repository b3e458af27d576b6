#pragma once
// Implicit state of a stateful model (sequence_batching.state): what each sequence slot
// feeds the model as its state inputs, reset to the initial state when a sequence
// starts and replaced by the model's state outputs after each of its requests.
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "core/inference_request.h"
#include "core/inference_response.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

struct StateSpec {
  std::string input_name;
  std::string output_name;
  DataType dtype = DataType::kInvalid;
  Tensor initial;  // without the batch dim; named input_name
};

// Reads every state's initial value (zeros, or <model_dir>/initial_state/<data_file>).
Result<std::vector<StateSpec>> LoadStateSpecs(const inference::ModelConfig& config,
                                              const std::string& model_dir);

class SlotState {
 public:
  void Reset(const std::vector<StateSpec>& specs);
  // Appends the state inputs to `request`, with a batch dim of 1 when `batched`.
  void Feed(InferenceRequest& request, bool batched) const;
  // Keeps a copy of each state output of `response` (the backend's buffers are not
  // ours to hold past the response); fails naming a missing or mistyped output.
  Status Capture(const std::vector<StateSpec>& specs, const InferenceResponse& response,
                 bool batched);
  bool empty() const { return values_.empty(); }

 private:
  std::vector<Tensor> values_;
};

}  // namespace flowserve
