#include "backends/onnxruntime/ort_config.h"

#include <algorithm>

#include "backends/sequence_tensors.h"

#include "common/tensor.h"
#include "model_config.pb.h"

namespace flowserve::onnxruntime {
namespace {

const TensorInfo* Find(const std::vector<TensorInfo>& list, const std::string& name) {
  for (const auto& t : list)
    if (t.name == name) return &t;
  return nullptr;
}

std::string Describe(const TensorInfo& t) {
  if (!t.is_tensor) return "'" + t.name + "' (not a tensor)";
  return "'" + t.name + "' " + OrtTypeName(t.ort_type) + " " + ShapeString(t.dims);
}

std::string DescribeAll(const std::vector<TensorInfo>& list) {
  std::string s;
  for (const auto& t : list) s += (s.empty() ? "" : ", ") + Describe(t);
  return s.empty() ? "none" : s;
}

bool HasBatchDim(const TensorInfo& t) { return !t.dims.empty() && t.dims[0] == -1; }

std::vector<int64_t> Dims(const google::protobuf::RepeatedField<int64_t>& f) {
  return std::vector<int64_t>(f.begin(), f.end());
}

// The shape the model sees for a config tensor: the reshape when there is one, with the
// batch dim in front when the model batches.
template <typename Io>
std::vector<int64_t> ModelSideShape(const Io& io, bool batching) {
  std::vector<int64_t> shape;
  if (batching) shape.push_back(-1);
  auto dims = io.has_reshape() ? Dims(io.reshape().shape()) : Dims(io.dims());
  shape.insert(shape.end(), dims.begin(), dims.end());
  return shape;
}

// A model dim of -1 takes anything; a fixed one needs the same fixed value in the config
// (a config -1 there would let requests through that the model rejects).
bool ShapeAgrees(const std::vector<int64_t>& config_shape, const std::vector<int64_t>& model) {
  if (config_shape.size() != model.size()) return false;
  for (size_t i = 0; i < model.size(); ++i) {
    if (model[i] != -1 && model[i] != config_shape[i]) return false;
  }
  return true;
}

template <typename Io>
Status CheckOne(const char* what, const Io& io, const std::vector<TensorInfo>& declared,
                int max_batch_size, const std::string& file) {
  const TensorInfo* m = Find(declared, io.name());
  if (m == nullptr) {
    return InvalidArgument(std::string(what) + " '" + io.name() + "' in config.pbtxt is not an " +
                           what + " of the model " + file + " (its " + what +
                           "s: " + DescribeAll(declared) + ")");
  }
  if (!m->is_tensor) {
    return InvalidArgument(std::string(what) + " '" + io.name() + "' of " + file +
                           " is not a tensor (a sequence, map or optional), which the KServe "
                           "protocol cannot carry");
  }
  const auto want = static_cast<DataType>(io.data_type());
  if (m->dtype == DataType::kInvalid) {
    return InvalidArgument(std::string(what) + " '" + io.name() + "' of " + file + " is a " +
                           OrtTypeName(m->ort_type) +
                           ", which the KServe protocol has no type for");
  }
  if (want != m->dtype) {
    return InvalidArgument(std::string(what) + " '" + io.name() + "': config.pbtxt says " +
                           std::string(DataTypeConfigName(want)) + " but the model " + file +
                           " has " + OrtTypeName(m->ort_type) + " (" +
                           std::string(DataTypeConfigName(m->dtype)) + ")");
  }
  const bool batching = max_batch_size > 0;
  if (batching && !HasBatchDim(*m)) {
    return InvalidArgument(std::string(what) + " '" + io.name() +
                           "': config.pbtxt has max_batch_size " + std::to_string(max_batch_size) +
                           ", which needs a dynamic first dim, but the model " + file +
                           " has shape " + ShapeString(m->dims) +
                           "; set max_batch_size: 0 and give the full shape as dims");
  }
  auto shape = ModelSideShape(io, batching);
  if (!ShapeAgrees(shape, m->dims)) {
    std::string said = io.has_reshape() ? "reshape " + ShapeString(Dims(io.reshape().shape()))
                                        : "dims " + ShapeString(Dims(io.dims()));
    return InvalidArgument(std::string(what) + " '" + io.name() + "': config.pbtxt " + said +
                           (batching ? " (with the batch dim: " + ShapeString(shape) + ")" : "") +
                           " but the model " + file + " has shape " + ShapeString(m->dims) +
                           (batching ? "" : " (max_batch_size is 0, so dims are the full shape)"));
  }
  return Status::Ok();
}

// Triton's rule: a model batches when every input and output has a dynamic first dim.
bool ModelCanBatch(const SessionIo& model) {
  if (model.inputs.empty() && model.outputs.empty()) return false;
  for (const auto* list : {&model.inputs, &model.outputs}) {
    for (const auto& t : *list)
      if (!t.is_tensor || !HasBatchDim(t)) return false;
  }
  return true;
}

// A config tensor whose dims already have the model's full rank means a config written
// for max_batch_size 0: batching must not be switched on under it.
template <typename Io>
bool WrittenWithoutBatching(const google::protobuf::RepeatedPtrField<Io>& list,
                            const std::vector<TensorInfo>& declared) {
  for (const auto& io : list) {
    const TensorInfo* m = Find(declared, io.name());
    if (m == nullptr || io.has_reshape() || io.dims().empty()) continue;
    if (static_cast<size_t>(io.dims().size()) == m->dims.size()) return true;
  }
  return false;
}

// The dims of a new config tensor, with Triton's trick for a model tensor that is a
// scalar per batch item: dims [1] and an empty reshape.
template <typename Io>
void FillShape(Io& io, const TensorInfo& m, bool batching) {
  io.clear_dims();
  for (size_t i = batching ? 1 : 0; i < m.dims.size(); ++i) io.add_dims(m.dims[i]);
  if (io.dims().empty()) {
    io.add_dims(1);
    io.mutable_reshape();  // present and empty
  }
}

template <typename Io>
void Complete(google::protobuf::RepeatedPtrField<Io>& list, const std::vector<TensorInfo>& declared,
              bool add_missing, bool batching) {
  for (auto& io : list) {
    const TensorInfo* m = Find(declared, io.name());
    if (m == nullptr || !m->is_tensor || m->dtype == DataType::kInvalid) continue;  // Check says
    if (io.data_type() == inference::TYPE_INVALID) {
      io.set_data_type(static_cast<inference::DataType>(m->dtype));
    }
    if (io.dims().empty() && !io.has_reshape()) FillShape(io, *m, batching);
  }
  if (!add_missing) return;
  for (const auto& m : declared) {
    bool listed = false;
    for (const auto& io : list) listed = listed || io.name() == m.name;
    if (listed || !m.is_tensor || m.dtype == DataType::kInvalid) continue;
    Io* io = list.Add();
    io->set_name(m.name);
    io->set_data_type(static_cast<inference::DataType>(m.dtype));
    FillShape(*io, m, batching);
  }
}

// The model's tensors less a stateful model's control and state tensors, which the
// sequence batcher feeds and reads: they are not the client's inputs and outputs.
SessionIo ClientVisible(const inference::ModelConfig& config, const SessionIo& model) {
  if (!config.has_sequence_batching()) return model;
  SessionIo visible = model;
  auto drop = [](std::vector<TensorInfo>& list, const std::vector<SequenceTensor>& names) {
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const TensorInfo& t) {
                                for (const auto& n : names)
                                  if (n.name == t.name) return true;
                                return false;
                              }),
               list.end());
  };
  drop(visible.inputs, SequenceInputs(config));
  drop(visible.outputs, SequenceOutputs(config));
  return visible;
}

}  // namespace

Status CheckConfig(const inference::ModelConfig& config, const SessionIo& all,
                   const std::string& file) {
  const SessionIo model = ClientVisible(config, all);
  const int mbs = config.max_batch_size();
  for (const auto& in : config.input())
    FS_RETURN_IF_ERROR(CheckOne("input", in, model.inputs, mbs, file));
  for (const auto& out : config.output())
    FS_RETURN_IF_ERROR(CheckOne("output", out, model.outputs, mbs, file));
  for (const auto& m : model.inputs) {
    bool listed = false;
    for (const auto& in : config.input()) listed = listed || in.name() == m.name;
    if (!listed) {
      return InvalidArgument("the model " + file + " needs input " + Describe(m) +
                             ", which config.pbtxt does not list");
    }
  }
  if (config.output().empty()) {
    return InvalidArgument("config.pbtxt lists no outputs; the model " + file + " has " +
                           DescribeAll(model.outputs));
  }
  return Status::Ok();
}

Status CompleteConfig(inference::ModelConfig& config, const SessionIo& all,
                      int default_max_batch_size, const std::string& file) {
  const SessionIo model = ClientVisible(config, all);
  if (config.max_batch_size() == 0 && default_max_batch_size > 0 && ModelCanBatch(model) &&
      !WrittenWithoutBatching(config.input(), model.inputs) &&
      !WrittenWithoutBatching(config.output(), model.outputs)) {
    config.set_max_batch_size(default_max_batch_size);
  }
  const bool batching = config.max_batch_size() > 0;
  if (config.max_batch_size() > 1 && !config.has_dynamic_batching() &&
      !config.has_sequence_batching() && !config.has_ensemble_scheduling()) {
    config.mutable_dynamic_batching();
  }
  Complete(*config.mutable_input(), model.inputs, /*add_missing=*/true, batching);
  Complete(*config.mutable_output(), model.outputs, /*add_missing=*/config.output().empty(),
           batching);
  return CheckConfig(config, all, file);
}

}  // namespace flowserve::onnxruntime
