#include "core/request_validator.h"

#include "core/model_version.h"
#include "core/tensor_reshape.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

std::string DimsString(const google::protobuf::RepeatedField<int64_t>& dims, bool batched) {
  std::vector<int64_t> v;
  if (batched) v.push_back(-1);
  v.insert(v.end(), dims.begin(), dims.end());
  return ShapeString(v);
}

bool ShapeMatches(const std::vector<int64_t>& shape, size_t offset,
                  const google::protobuf::RepeatedField<int64_t>& dims) {
  if (shape.size() - offset != static_cast<size_t>(dims.size())) return false;
  for (int i = 0; i < dims.size(); ++i) {
    if (dims[i] != -1 && dims[i] != shape[offset + i]) return false;
  }
  return true;
}

}  // namespace

Status ValidateRequest(const ModelVersion& model, InferenceRequest& request) {
  const auto& cfg = model.config();
  const std::string where = "model '" + model.name() + "'";
  const bool batched = cfg.max_batch_size() > 0;
  int64_t batch = -1;

  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const Tensor& t = request.inputs[i];
    for (size_t j = 0; j < i; ++j) {
      if (request.inputs[j].name == t.name) {
        return InvalidArgument("input '" + t.name + "' appears twice in the request for " + where);
      }
    }
    const inference::ModelInput* in = nullptr;
    for (const auto& ci : cfg.input()) {
      if (ci.name() == t.name) in = &ci;
    }
    if (!in) {
      std::string known;
      for (const auto& ci : cfg.input()) known += (known.empty() ? "'" : ", '") + ci.name() + "'";
      return InvalidArgument("unexpected inference input '" + t.name + "' for " + where +
                             " (it takes " + known + ")");
    }
    auto want = static_cast<DataType>(in->data_type());
    if (t.dtype != want) {
      return InvalidArgument("inference input '" + t.name + "' data-type is '" +
                             std::string(DataTypeName(t.dtype)) + "', but " + where + " expects '" +
                             std::string(DataTypeName(want)) + "'");
    }
    for (int64_t d : t.shape) {
      if (d < 0) {
        return InvalidArgument("inference input '" + t.name + "' has negative dim in shape " +
                               ShapeString(t.shape));
      }
    }
    int64_t elems = t.ElementCount();
    if (elems < 0) {
      return InvalidArgument("inference input '" + t.name + "' shape " + ShapeString(t.shape) +
                             " has too many elements");
    }
    size_t offset = 0;
    if (batched) {
      if (t.shape.empty()) {
        return InvalidArgument("inference input '" + t.name + "' for " + where +
                               " must have a batch dimension: expected shape " +
                               DimsString(in->dims(), true) + ", got []");
      }
      int64_t b = t.shape[0];
      if (b < 1 || b > cfg.max_batch_size()) {
        return InvalidArgument("inference request batch-size " + std::to_string(b) + " for " +
                               where + " must be in [1, " + std::to_string(cfg.max_batch_size()) +
                               "] (input '" + t.name + "')");
      }
      if (batch >= 0 && batch != b) {
        return InvalidArgument("inputs of the request for " + where +
                               " have different batch sizes (" + std::to_string(batch) + " and " +
                               std::to_string(b) + " for '" + t.name + "')");
      }
      batch = b;
      offset = 1;
    }
    if (!in->is_shape_tensor() && !ShapeMatches(t.shape, offset, in->dims())) {
      return InvalidArgument("unexpected shape for input '" + t.name + "' for " + where +
                             ". Expected " + DimsString(in->dims(), batched) + ", got " +
                             ShapeString(t.shape));
    }
    if (t.dtype == DataType::kBytes) {
      if (!ValidateBytesBuffer(t.data, t.byte_size, elems)) {
        return InvalidArgument("input '" + t.name + "' for " + where + " holds " +
                               std::to_string(t.byte_size) + " bytes that do not frame exactly " +
                               std::to_string(elems) +
                               " BYTES elements (4-byte length + data each)");
      }
    } else {
      uint64_t expected = static_cast<uint64_t>(elems) * DataTypeSize(t.dtype);
      if (t.byte_size != expected) {
        return InvalidArgument("input '" + t.name + "' for " + where + " has " +
                               std::to_string(t.byte_size) + " bytes of data, expected " +
                               std::to_string(expected) + " for shape " + ShapeString(t.shape) +
                               " " + std::string(DataTypeName(t.dtype)));
      }
    }
  }

  for (const auto& ci : cfg.input()) {
    if (!ci.optional() && !request.FindInput(ci.name())) {
      return InvalidArgument("inference request for " + where + " is missing required input '" +
                             ci.name() + "'");
    }
  }
  for (const auto& out : request.outputs) {
    bool found = false;
    for (const auto& co : cfg.output()) found = found || co.name() == out.name;
    if (!found) {
      return InvalidArgument("unexpected inference output '" + out.name + "' for " + where);
    }
  }
  request.batch_size = batched ? (batch > 0 ? batch : 1) : 1;
  // Valid as the client sent it: now give the model the shapes it was built for.
  if (model.has_reshape()) {
    for (auto& t : request.inputs) {
      for (const auto& ci : cfg.input()) {
        if (ci.name() != t.name || !ci.has_reshape()) continue;
        auto shape = ReshapeShape(t.shape, batched, {ci.dims().data(), size_t(ci.dims_size())},
                                  {ci.reshape().shape().data(), size_t(ci.reshape().shape_size())});
        if (!shape.ok()) return shape.status().WithContext("input '" + t.name + "': ");
        t.shape = std::move(shape).value();
      }
    }
  }
  return Status::Ok();
}

}  // namespace flowserve
