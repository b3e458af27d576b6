#pragma once
// An ensemble's step graph, checked once at load: every tensor has exactly one
// producer (an ensemble input or one step), the steps form no cycle, every ensemble
// input is read and every output written, and each step's map agrees with its
// composing model's config (names, datatypes, shapes). Errors name the step and tensor.
// A decoupled composing model may be a step when every other step runs wholly before or
// after it: each of its responses then carries the rest of the graph on its own.
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/datatype.h"
#include "common/status.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

class ModelVersion;

// The loaded version of a composing model (-1: the newest ready one), or why there is none.
using ModelFinder =
    std::function<Result<std::shared_ptr<ModelVersion>>(const std::string& name, int64_t version)>;

struct EnsemblePlan {
  struct Binding {
    std::string model_tensor;  // the composing model's input or output name
    int tensor;                // index into tensor_names
  };
  struct Step {
    std::string model_name;
    int64_t model_version = -1;
    std::vector<Binding> inputs;
    std::vector<Binding> outputs;
    std::vector<int> input_tensors;  // distinct tensors the step waits for
    bool decoupled = false;          // the model answers with any number of responses
  };
  std::vector<std::string> tensor_names;
  std::vector<Step> steps;
  std::vector<int> input_tensors;           // the ensemble's inputs, config order
  std::vector<int> output_tensors;          // the ensemble's outputs, config order
  std::vector<std::vector<int>> consumers;  // tensor -> steps that read it
  bool decoupled = false;                   // some step is: the ensemble answers a stream
};

// Builds the plan; `find` resolves composing models for the config checks.
Result<EnsemblePlan> BuildEnsemblePlan(const inference::ModelConfig& ensemble,
                                       const ModelFinder& find);

// The model names an ensemble config's steps refer to.
std::set<std::string> ComposingModelNames(const inference::ModelConfig& ensemble);

}  // namespace flowserve
