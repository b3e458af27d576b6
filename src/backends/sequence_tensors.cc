#include "backends/sequence_tensors.h"

#include "model_config.pb.h"

namespace flowserve {

std::vector<SequenceTensor> SequenceInputs(const inference::ModelConfig& config) {
  std::vector<SequenceTensor> out;
  if (!config.has_sequence_batching()) return out;
  const auto& sb = config.sequence_batching();
  for (const auto& ci : sb.control_input()) {
    if (ci.control_size() == 0) continue;
    const auto& c = ci.control(0);
    SequenceTensor t;
    t.name = ci.name();
    t.dims = {1};
    if (c.kind() == inference::ModelSequenceBatching::Control::CONTROL_SEQUENCE_CORRID) {
      t.dtype = static_cast<DataType>(c.data_type());
    } else if (c.int32_false_true_size() > 0) {
      t.dtype = DataType::kInt32;
    } else if (c.fp32_false_true_size() > 0) {
      t.dtype = DataType::kFp32;
    } else {
      t.dtype = DataType::kBool;
    }
    out.push_back(std::move(t));
  }
  for (const auto& s : sb.state()) {
    out.push_back({s.input_name(), static_cast<DataType>(s.data_type()),
                   std::vector<int64_t>(s.dims().begin(), s.dims().end())});
  }
  return out;
}

std::vector<SequenceTensor> SequenceOutputs(const inference::ModelConfig& config) {
  std::vector<SequenceTensor> out;
  if (!config.has_sequence_batching()) return out;
  for (const auto& s : config.sequence_batching().state()) {
    out.push_back({s.output_name(), static_cast<DataType>(s.data_type()),
                   std::vector<int64_t>(s.dims().begin(), s.dims().end())});
  }
  return out;
}

}  // namespace flowserve
