#include "frontends/grpc/infer_convert.h"

#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <variant>

#include "common/datatype.h"
#include "common/tensor.h"
#include "core/request_limits.h"
#include "core/server.h"

namespace flowserve::grpc_frontend {
namespace {

using inference::InferParameter;
using inference::InferTensorContents;
using inference::ModelInferRequest;
template <typename T>
using Repeated = google::protobuf::RepeatedField<T>;

Result<uint64_t> UnsignedParam(const InferParameter& p, const std::string& key) {
  switch (p.parameter_choice_case()) {
    case InferParameter::kInt64Param:
      if (p.int64_param() < 0) {
        return InvalidArgument("parameter '" + key + "' must not be negative");
      }
      return static_cast<uint64_t>(p.int64_param());
    case InferParameter::kUint64Param:
      return p.uint64_param();
    default:
      return InvalidArgument("parameter '" + key + "' must be an integer");
  }
}

Result<bool> BoolParam(const InferParameter& p, const std::string& key) {
  if (p.parameter_choice_case() != InferParameter::kBoolParam) {
    return InvalidArgument("parameter '" + key + "' must be a bool");
  }
  return p.bool_param();
}

Status ApplyRequestParameter(const std::string& key, const InferParameter& p,
                             InferenceRequest* out) {
  if (key == "priority" || key == "timeout") {
    auto v = UnsignedParam(p, key);
    if (!v.ok()) return v.status();
    (key == "priority" ? out->priority : out->timeout_us) = *v;
    return Status::Ok();
  }
  if (key == "sequence_id") {
    if (p.parameter_choice_case() == InferParameter::kStringParam) {
      out->correlation_id_str = p.string_param();
      return Status::Ok();
    }
    auto v = UnsignedParam(p, key);
    if (!v.ok()) return v.status();
    out->correlation_id = *v;
    return Status::Ok();
  }
  if (key == "sequence_start" || key == "sequence_end") {
    auto v = BoolParam(p, key);
    if (!v.ok()) return v.status();
    (key == "sequence_start" ? out->sequence_start : out->sequence_end) = *v;
    return Status::Ok();
  }
  if (key == kEmptyFinalResponse) return Status::Ok();
  switch (p.parameter_choice_case()) {
    case InferParameter::kBoolParam:
      out->parameters[key] = p.bool_param();
      break;
    case InferParameter::kInt64Param:
      out->parameters[key] = p.int64_param();
      break;
    case InferParameter::kUint64Param:
      out->parameters[key] = static_cast<int64_t>(p.uint64_param());
      break;
    case InferParameter::kDoubleParam:
      out->parameters[key] = p.double_param();
      break;
    case InferParameter::kStringParam:
      out->parameters[key] = p.string_param();
      break;
    default:
      return InvalidArgument("parameter '" + key + "' has no value");
  }
  return Status::Ok();
}

// Same width as the core's layout: the tensor points into the message.
template <typename T>
void ViewField(const Repeated<T>& field, const std::shared_ptr<const void>& owner, Tensor& t) {
  t.data = reinterpret_cast<const char*>(field.data());
  t.byte_size = static_cast<size_t>(field.size()) * sizeof(T);
  t.owner = owner;
}

// INT8/INT16/UINT8/UINT16 travel widened; narrowing is the one conversion needed.
template <typename Dst, typename Src>
Status NarrowField(const Repeated<Src>& field, const std::string& name, Tensor& t) {
  char* p = AllocateTensorData(t, static_cast<size_t>(field.size()) * sizeof(Dst));
  for (int i = 0; i < field.size(); ++i) {
    Src v = field.Get(i);
    if (v < static_cast<Src>(std::numeric_limits<Dst>::min()) ||
        v > static_cast<Src>(std::numeric_limits<Dst>::max())) {
      return InvalidArgument("value " + std::to_string(v) + " of input '" + name +
                             "' is out of range for " + std::string(DataTypeName(t.dtype)));
    }
    Dst d = static_cast<Dst>(v);
    std::memcpy(p + i * sizeof(Dst), &d, sizeof(Dst));
  }
  return Status::Ok();
}

void PackBytes(const google::protobuf::RepeatedPtrField<std::string>& field, Tensor& t) {
  size_t total = 0;
  for (const auto& s : field) total += 4 + s.size();
  char* p = AllocateTensorData(t, total);
  for (const auto& s : field) {
    uint32_t len = static_cast<uint32_t>(s.size());
    std::memcpy(p, &len, 4);
    std::memcpy(p + 4, s.data(), s.size());
    p += 4 + s.size();
  }
}

// Number of elements in the contents field that carries `dtype`; -1 when none does.
int64_t TypedCount(const InferTensorContents& c, DataType dtype) {
  switch (dtype) {
    case DataType::kBool:
      return c.bool_contents_size();
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
      return c.int_contents_size();
    case DataType::kInt64:
      return c.int64_contents_size();
    case DataType::kUint8:
    case DataType::kUint16:
    case DataType::kUint32:
      return c.uint_contents_size();
    case DataType::kUint64:
      return c.uint64_contents_size();
    case DataType::kFp32:
      return c.fp32_contents_size();
    case DataType::kFp64:
      return c.fp64_contents_size();
    case DataType::kBytes:
      return c.bytes_contents_size();
    default:
      return -1;
  }
}

// Element counts and byte sizes are checked by the core, with the same words for every
// protocol; here only the layout is translated.
Status FromTypedContents(const ModelInferRequest::InferInputTensor& in,
                         const std::shared_ptr<const void>& owner, Tensor& t) {
  const InferTensorContents& c = in.contents();
  if (TypedCount(c, t.dtype) < 0) {
    return InvalidArgument("input '" + in.name() + "': datatype " + in.datatype() +
                           " must be sent in raw_input_contents, not in contents");
  }
  switch (t.dtype) {
    case DataType::kBool:
      static_assert(sizeof(bool) == 1, "BOOL tensors are one byte per element");
      ViewField(c.bool_contents(), owner, t);
      return Status::Ok();
    case DataType::kInt8:
      return NarrowField<int8_t>(c.int_contents(), in.name(), t);
    case DataType::kInt16:
      return NarrowField<int16_t>(c.int_contents(), in.name(), t);
    case DataType::kInt32:
      ViewField(c.int_contents(), owner, t);
      return Status::Ok();
    case DataType::kInt64:
      ViewField(c.int64_contents(), owner, t);
      return Status::Ok();
    case DataType::kUint8:
      return NarrowField<uint8_t>(c.uint_contents(), in.name(), t);
    case DataType::kUint16:
      return NarrowField<uint16_t>(c.uint_contents(), in.name(), t);
    case DataType::kUint32:
      ViewField(c.uint_contents(), owner, t);
      return Status::Ok();
    case DataType::kUint64:
      ViewField(c.uint64_contents(), owner, t);
      return Status::Ok();
    case DataType::kFp32:
      ViewField(c.fp32_contents(), owner, t);
      return Status::Ok();
    case DataType::kFp64:
      ViewField(c.fp64_contents(), owner, t);
      return Status::Ok();
    case DataType::kBytes:
      PackBytes(c.bytes_contents(), t);
      return Status::Ok();
    default:
      return Internal("unhandled datatype");
  }
}

// Reads Triton's shared memory tensor parameters; false when the tensor names no region.
Result<bool> ReadSharedMemoryRef(const google::protobuf::Map<std::string, InferParameter>& params,
                                 const std::string& what, SharedMemoryRef* ref) {
  auto region = params.find("shared_memory_region");
  auto offset = params.find("shared_memory_offset");
  auto size = params.find("shared_memory_byte_size");
  if (region == params.end()) {
    if (offset != params.end() || size != params.end()) {
      return InvalidArgument(what +
                             ": shared_memory_offset or shared_memory_byte_size given without "
                             "shared_memory_region");
    }
    return false;
  }
  if (region->second.parameter_choice_case() != InferParameter::kStringParam) {
    return InvalidArgument(what + ": parameter 'shared_memory_region' must be a string");
  }
  ref->region = region->second.string_param();
  if (size == params.end()) {
    return InvalidArgument(what +
                           ": parameter 'shared_memory_byte_size' is required with "
                           "shared_memory_region");
  }
  auto n = UnsignedParam(size->second, "shared_memory_byte_size");
  if (!n.ok()) return n.status().WithContext(what + ": ");
  ref->byte_size = *n;
  if (offset != params.end()) {
    auto o = UnsignedParam(offset->second, "shared_memory_offset");
    if (!o.ok()) return o.status().WithContext(what + ": ");
    ref->offset = *o;
  }
  return true;
}

Status NoSharedMemory(const std::string& what) {
  return Unavailable(what + ": system shared memory is not available on this endpoint");
}

}  // namespace

Status ToInferenceRequest(const ModelInferRequest& msg, const std::shared_ptr<const void>& owner,
                          InferenceRequest* out, const SharedMemoryRegistry* shared_memory,
                          std::vector<SharedMemoryOutput>* shm_outputs) {
  out->model_name = msg.model_name();
  auto version = ParseModelVersion(msg.model_version());
  if (!version.ok()) return version.status();
  out->model_version = *version;
  out->id = msg.id();
  for (const auto& [key, p] : msg.parameters()) {
    FS_RETURN_IF_ERROR(ApplyRequestParameter(key, p, out));
  }

  if (static_cast<size_t>(msg.inputs_size()) > kMaxRequestInputs) {
    return InvalidArgument("the request has " + std::to_string(msg.inputs_size()) +
                           " inputs; at most " + std::to_string(kMaxRequestInputs) +
                           " are accepted");
  }
  if (static_cast<size_t>(msg.outputs_size()) > kMaxRequestOutputs) {
    return InvalidArgument("the request asks for " + std::to_string(msg.outputs_size()) +
                           " outputs; at most " + std::to_string(kMaxRequestOutputs) +
                           " are accepted");
  }
  const int raw_count = msg.raw_input_contents_size();
  if (raw_count != 0 && raw_count != msg.inputs_size()) {
    return InvalidArgument("expected " + std::to_string(msg.inputs_size()) +
                           " raw_input_contents (one per input), got " + std::to_string(raw_count));
  }
  out->inputs.reserve(msg.inputs_size());
  for (int i = 0; i < msg.inputs_size(); ++i) {
    const auto& in = msg.inputs(i);
    SharedMemoryRef shm;
    auto in_shm = ReadSharedMemoryRef(in.parameters(), "input '" + in.name() + "'", &shm);
    if (!in_shm.ok()) return in_shm.status();
    Tensor& t = out->inputs.emplace_back();
    t.name = in.name();
    t.dtype = DataTypeFromName(in.datatype());
    if (t.dtype == DataType::kInvalid) {
      return InvalidArgument("input '" + in.name() + "': invalid datatype '" + in.datatype() + "'");
    }
    if (static_cast<size_t>(in.shape_size()) > kMaxTensorRank) {
      return InvalidArgument("input '" + in.name() + "': shape has " +
                             std::to_string(in.shape_size()) + " dimensions; at most " +
                             std::to_string(kMaxTensorRank) + " are supported");
    }
    t.shape.assign(in.shape().begin(), in.shape().end());
    if (*in_shm) {
      if (in.has_contents() || (raw_count != 0 && !msg.raw_input_contents(i).empty())) {
        return InvalidArgument("input '" + in.name() +
                               "': has shared_memory_region and also contents; send one");
      }
      for (int64_t d : t.shape) {
        if (d < 0) {
          return InvalidArgument("input '" + in.name() + "': shape " + ShapeString(t.shape) +
                                 " has a negative dimension");
        }
      }
      if (shared_memory == nullptr) return NoSharedMemory("input '" + in.name() + "'");
      FS_RETURN_IF_ERROR(BindSharedMemoryInput(*shared_memory, shm, t));
    } else if (raw_count != 0) {
      if (in.has_contents()) {
        return InvalidArgument("input '" + in.name() +
                               "': contents and raw_input_contents cannot both be used");
      }
      const std::string& raw = msg.raw_input_contents(i);
      t.data = raw.data();
      t.byte_size = raw.size();
      t.owner = owner;
    } else {
      FS_RETURN_IF_ERROR(FromTypedContents(in, owner, t));
    }
  }

  out->outputs.reserve(msg.outputs_size());
  for (const auto& o : msg.outputs()) {
    RequestedOutput& r = out->outputs.emplace_back();
    r.name = o.name();
    for (const auto& [key, p] : o.parameters()) {
      if (key == "classification") {
        auto n = UnsignedParam(p, key);
        if (!n.ok()) return n.status();
        if (*n > UINT32_MAX) return InvalidArgument("parameter 'classification' is too large");
        r.classification = static_cast<uint32_t>(*n);
      }
      // binary_data and the like are HTTP notions: gRPC outputs are always raw.
    }
    SharedMemoryRef shm;
    auto in_shm = ReadSharedMemoryRef(o.parameters(), "output '" + o.name() + "'", &shm);
    if (!in_shm.ok()) return in_shm.status();
    if (*in_shm) {
      if (r.classification > 0) {
        return InvalidArgument("output '" + o.name() +
                               "': classification cannot be written to shared memory");
      }
      if (shared_memory == nullptr || shm_outputs == nullptr) {
        return NoSharedMemory("output '" + o.name() + "'");
      }
      auto reserved = ReserveSharedMemoryOutput(*shared_memory, o.name(), shm);
      if (!reserved.ok()) return reserved.status();
      shm_outputs->push_back(std::move(reserved).value());
    }
  }
  return Status::Ok();
}

namespace {

void FillResponse(const InferenceResponse& response,
                  const std::vector<SharedMemoryOutput>* shm_outputs,
                  inference::ModelInferResponse* out) {
  out->set_model_name(response.model_name);
  out->set_model_version(std::to_string(response.model_version));
  out->set_id(response.id);
  auto& params = *out->mutable_parameters();
  for (const auto& [key, value] : response.parameters) {
    InferParameter& p = params[key];
    std::visit(
        [&p](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, bool>) {
            p.set_bool_param(v);
          } else if constexpr (std::is_same_v<V, int64_t>) {
            p.set_int64_param(v);
          } else if constexpr (std::is_same_v<V, double>) {
            p.set_double_param(v);
          } else {
            p.set_string_param(v);
          }
        },
        value);
  }
  out->mutable_outputs()->Reserve(static_cast<int>(response.outputs.size()));
  bool any_inline = response.outputs.empty();
  for (const Tensor& t : response.outputs) {
    auto* o = out->add_outputs();
    o->set_name(t.name);
    o->set_datatype(std::string(DataTypeName(t.dtype)));
    o->mutable_shape()->Add(t.shape.begin(), t.shape.end());
    std::string* raw = out->add_raw_output_contents();
    if (shm_outputs != nullptr && FindSharedMemoryOutput(*shm_outputs, t.name)) continue;
    any_inline = true;
    if (t.byte_size > 0) raw->assign(t.data, t.byte_size);
  }
  // Every output in shared memory: no raw contents at all.
  if (!any_inline) out->clear_raw_output_contents();
}

}  // namespace

void ToModelInferResponse(const InferenceResponse& response, inference::ModelInferResponse* out) {
  FillResponse(response, nullptr, out);
}

Status ToModelInferResponse(const InferenceResponse& response,
                            const std::vector<SharedMemoryOutput>& shm_outputs,
                            inference::ModelInferResponse* out) {
  if (!shm_outputs.empty()) FS_RETURN_IF_ERROR(WriteSharedMemoryOutputs(shm_outputs, response));
  FillResponse(response, shm_outputs.empty() ? nullptr : &shm_outputs, out);
  return Status::Ok();
}

StreamRequestInfo StreamInfoOf(const inference::ModelInferRequest& msg) {
  StreamRequestInfo info;
  auto it = msg.parameters().find(kEmptyFinalResponse);
  if (it != msg.parameters().end()) info.final_flag = it->second.bool_param();
  info.id = msg.id();
  info.model = msg.model_name();
  info.version = msg.model_version();
  return info;
}

std::unique_ptr<inference::ModelStreamInferResponse> StreamError(const StreamRequestInfo& info,
                                                                 const Status& st) {
  // The id lets a client match an error to its request on a shared stream.
  auto out = std::make_unique<inference::ModelStreamInferResponse>();
  out->set_error_message(st.message());
  inference::ModelInferResponse* infer = out->mutable_infer_response();
  infer->set_id(info.id);
  infer->set_model_name(info.model);
  infer->set_model_version(info.version);
  return out;
}

std::unique_ptr<inference::ModelStreamInferResponse> ToStreamResponse(
    const InferenceResponse& r, const std::vector<SharedMemoryOutput>& shm_outputs,
    const StreamRequestInfo& info) {
  if (!r.status.ok()) return StreamError(info, r.status);
  auto out = std::make_unique<inference::ModelStreamInferResponse>();
  inference::ModelInferResponse* infer = out->mutable_infer_response();
  Status done = ToModelInferResponse(r, shm_outputs, infer);
  if (!done.ok()) return StreamError(info, done);
  if (info.final_flag) {
    (*infer->mutable_parameters())["triton_final_response"].set_bool_param(r.final);
  }
  if (r.flag_only && !info.final_flag) return nullptr;
  return out;
}

}  // namespace flowserve::grpc_frontend
