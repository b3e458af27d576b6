#pragma once
// The tensors a stateful model exchanges with the sequence batcher besides the config's
// inputs and outputs: control inputs (START, END, READY, CORRID) and implicit state
// (fed as `input_name`, read back from `output_name`). Backends bind them like config
// tensors; the core creates and consumes them.
#include <string>
#include <vector>

#include "common/datatype.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

struct SequenceTensor {
  std::string name;
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> dims;  // without the batch dim
};

// Control inputs in config order, then state inputs; empty without sequence_batching.
std::vector<SequenceTensor> SequenceInputs(const inference::ModelConfig& config);
// State outputs; empty without sequence_batching.
std::vector<SequenceTensor> SequenceOutputs(const inference::ModelConfig& config);

}  // namespace flowserve
