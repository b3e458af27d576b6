#include "core/sequence_state.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "model_config.pb.h"

namespace flowserve {
namespace {

Tensor CopyOf(const std::string& name, DataType dtype, std::vector<int64_t> shape, const char* data,
              size_t size) {
  Tensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  char* dst = AllocateTensorData(t, size);
  if (size > 0) std::memcpy(dst, data, size);
  return t;
}

}  // namespace

Result<std::vector<StateSpec>> LoadStateSpecs(const inference::ModelConfig& config,
                                              const std::string& model_dir) {
  std::vector<StateSpec> specs;
  if (!config.has_sequence_batching()) return specs;
  for (const auto& s : config.sequence_batching().state()) {
    const std::string what = "sequence_batching state '" + s.input_name() + "'";
    if (s.input_name().empty() || s.output_name().empty()) {
      return InvalidArgument("sequence_batching state needs both input_name and output_name");
    }
    StateSpec spec;
    spec.input_name = s.input_name();
    spec.output_name = s.output_name();
    spec.dtype = static_cast<DataType>(s.data_type());
    if (spec.dtype == DataType::kInvalid) return InvalidArgument(what + " has no data_type");
    std::vector<int64_t> dims(s.dims().begin(), s.dims().end());
    std::string file;
    if (s.initial_state_size() > 0) {
      const auto& init = s.initial_state(0);
      if (init.data_type() != s.data_type()) {
        return InvalidArgument(what + ": initial_state data_type differs from the state's");
      }
      dims.assign(init.dims().begin(), init.dims().end());
      if (init.has_data_file()) file = model_dir + "/initial_state/" + init.data_file();
    }
    const int64_t elems = ElementCount(dims);
    if (elems < 0) {
      return InvalidArgument(what + " has a variable dim " + ShapeString(dims) +
                             ": give initial_state with fixed dims");
    }
    if (spec.dtype == DataType::kBytes) {
      return InvalidArgument(what + ": TYPE_STRING states are not supported");
    }
    const size_t size = static_cast<size_t>(elems) * DataTypeSize(spec.dtype);
    std::string bytes(size, '\0');
    if (!file.empty()) {
      std::ifstream in(file, std::ios::binary);
      if (!in) return InvalidArgument(what + ": cannot open initial_state data_file " + file);
      std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (got.size() != size) {
        return InvalidArgument(what + ": initial_state data_file " + file + " holds " +
                               std::to_string(got.size()) + " bytes, expected " +
                               std::to_string(size) + " for dims " + ShapeString(dims));
      }
      bytes = std::move(got);
    }
    spec.initial = CopyOf(spec.input_name, spec.dtype, dims, bytes.data(), bytes.size());
    specs.push_back(std::move(spec));
  }
  return specs;
}

void SlotState::Reset(const std::vector<StateSpec>& specs) {
  values_.clear();
  for (const auto& s : specs) values_.push_back(s.initial);  // shares the immutable bytes
}

void SlotState::Feed(InferenceRequest& request, bool batched) const {
  for (const auto& v : values_) {
    Tensor t = v;
    if (batched) t.shape.insert(t.shape.begin(), 1);
    request.inputs.push_back(std::move(t));
  }
}

Status SlotState::Capture(const std::vector<StateSpec>& specs, const InferenceResponse& response,
                          bool batched) {
  std::vector<Tensor> next;
  next.reserve(specs.size());
  for (const auto& s : specs) {
    const Tensor* out = nullptr;
    for (const auto& t : response.outputs) {
      if (t.name == s.output_name) out = &t;
    }
    if (!out) return Internal("the model did not produce state output '" + s.output_name + "'");
    if (out->dtype != s.dtype) {
      return Internal("state output '" + s.output_name + "' is " +
                      std::string(DataTypeName(out->dtype)) + ", the state is " +
                      std::string(DataTypeName(s.dtype)));
    }
    std::vector<int64_t> shape = out->shape;
    if (batched && !shape.empty()) shape.erase(shape.begin());
    next.push_back(CopyOf(s.input_name, s.dtype, std::move(shape), out->data, out->byte_size));
  }
  values_ = std::move(next);
  return Status::Ok();
}

}  // namespace flowserve
