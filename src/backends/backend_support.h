#pragma once
// What every framework backend needs and none should write again: finding the model file
// in a version folder (Triton's and OneFlow Serving's layouts), reading config
// parameters, and sharing the cores among instances.
#include <span>
#include <string>

#include "common/status.h"
#include "core/inference_request.h"
#include "core/inference_response.h"

namespace flowserve {

// The model file in `version_dir`: `configured` (default_model_filename) when set, else
// `default_name` (model.onnx, model.pt, ...), else OneFlow Serving's `model` entry. A
// folder of that name is searched for `default_name` inside. `format` names the kind of
// model in the error ("TorchScript", "ONNX"), which lists what the folder holds.
Result<std::string> FindModelFile(const std::string& version_dir, const std::string& configured,
                                  const std::string& default_name, const std::string& format);

// A config parameter's value, with an error naming the key and the value.
Result<int> ParseIntParameter(const std::string& key, const std::string& value, int min);
Result<bool> ParseBoolParameter(const std::string& key, const std::string& value);

// Requests of a dynamic batch can join one tensor per input when they carry the same
// inputs and agree on every dim past the batch dim.
bool ConcatenableAlongBatch(std::span<InferenceRequest* const> requests);

// Runs a batch as one framework call when it can be one tensor per input, else one call
// per request. run(requests, responses) answers every response it is given.
template <typename Run>
void RunBatchOrEach(bool batching, std::span<InferenceRequest* const> requests,
                    std::span<InferenceResponse* const> responses, Run&& run) {
  if (batching && requests.size() > 1 && ConcatenableAlongBatch(requests)) {
    run(requests, responses);
    return;
  }
  for (size_t i = 0; i < requests.size(); ++i) run(requests.subspan(i, 1), responses.subspan(i, 1));
}

// Cores this process may run on (affinity mask, not the machine's total).
int UsableCores();
// A framework's default gives every instance every core, and instances running at the
// same time then fight over them: each gets its share instead.
int ThreadsPerInstance(int instance_count);

}  // namespace flowserve
