#include "backends/onnxruntime/ort_runtime.h"

#include <mutex>

#include "common/logging.h"

namespace flowserve::onnxruntime {
namespace {

// ORT's own log lines, at warning and above (the Env's level), into flowserve's log.
void LogFromOrt(void* /*param*/, OrtLoggingLevel severity, const char* category,
                const char* /*logid*/, const char* code_location, const char* message) {
  if (severity >= ORT_LOGGING_LEVEL_ERROR) {
    FS_LOG_ERROR("onnxruntime [{}] {}: {}", category, code_location, message);
  } else if (severity == ORT_LOGGING_LEVEL_WARNING) {
    FS_LOG_WARNING("onnxruntime [{}] {}", category, message);
  } else {
    FS_LOG_VERBOSE(1, "onnxruntime [{}] {}", category, message);
  }
}

}  // namespace

Status InitOrtApi() {
  static std::once_flag once;
  static Status status;
  std::call_once(once, [] {
    const OrtApiBase* base = OrtGetApiBase();
    const OrtApi* api = base ? base->GetApi(ORT_API_VERSION) : nullptr;
    if (api == nullptr) {
      status = Unavailable(
          "the ONNX Runtime library (" + std::string(base ? base->GetVersionString() : "?") +
          ") does not serve API version " + std::to_string(ORT_API_VERSION) +
          " that this backend was built with; it needs a newer libonnxruntime.so.1");
      return;
    }
    Ort::InitApi(api);
  });
  return status;
}

Ort::Env& OrtEnv() {
  // Never destroyed: sessions may outlive static destruction order at exit.
  static Ort::Env* env = new Ort::Env(ORT_LOGGING_LEVEL_WARNING, "flowserve", LogFromOrt, nullptr);
  return *env;
}

std::string OrtVersion() { return OrtGetApiBase()->GetVersionString(); }

std::optional<ONNXTensorElementDataType> ToOrtType(DataType dtype) {
  switch (dtype) {
    case DataType::kBool:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
    case DataType::kUint8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    case DataType::kUint16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16;
    case DataType::kUint32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32;
    case DataType::kUint64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64;
    case DataType::kInt8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case DataType::kInt16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16;
    case DataType::kInt32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case DataType::kInt64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    case DataType::kFp16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case DataType::kBf16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
    case DataType::kFp32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case DataType::kFp64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
    case DataType::kBytes:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING;
    default:
      return std::nullopt;
  }
}

DataType FromOrtType(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return DataType::kBool;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return DataType::kUint8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
      return DataType::kUint16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
      return DataType::kUint32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
      return DataType::kUint64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return DataType::kInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
      return DataType::kInt16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return DataType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return DataType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return DataType::kFp16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return DataType::kBf16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return DataType::kFp32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return DataType::kFp64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING:
      return DataType::kBytes;
    default:
      return DataType::kInvalid;
  }
}

std::string OrtTypeName(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return "tensor(bool)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return "tensor(uint8)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
      return "tensor(uint16)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
      return "tensor(uint32)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
      return "tensor(uint64)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return "tensor(int8)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
      return "tensor(int16)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return "tensor(int32)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return "tensor(int64)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return "tensor(float16)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return "tensor(bfloat16)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return "tensor(float)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return "tensor(double)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING:
      return "tensor(string)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_COMPLEX64:
      return "tensor(complex64)";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_COMPLEX128:
      return "tensor(complex128)";
    default:
      return "tensor(element type " + std::to_string(static_cast<int>(type)) + ")";
  }
}

namespace {

TensorInfo Describe(std::string name, const Ort::TypeInfo& type) {
  TensorInfo info;
  info.name = std::move(name);
  if (type.GetONNXType() != ONNX_TYPE_TENSOR) {
    info.is_tensor = false;
    return info;
  }
  auto shape = type.GetTensorTypeAndShapeInfo();
  info.ort_type = shape.GetElementType();
  info.dtype = FromOrtType(info.ort_type);
  info.dims = shape.GetShape();
  for (auto& d : info.dims) {
    if (d < 0) d = -1;  // symbolic ("batch") and unknown dims alike
  }
  return info;
}

}  // namespace

SessionIo ReadSessionIo(const Ort::Session& session) {
  SessionIo io;
  Ort::AllocatorWithDefaultOptions allocator;
  for (size_t i = 0; i < session.GetInputCount(); ++i) {
    io.inputs.push_back(
        Describe(session.GetInputNameAllocated(i, allocator).get(), session.GetInputTypeInfo(i)));
  }
  for (size_t i = 0; i < session.GetOutputCount(); ++i) {
    io.outputs.push_back(
        Describe(session.GetOutputNameAllocated(i, allocator).get(), session.GetOutputTypeInfo(i)));
  }
  return io;
}

std::string ExceptionText(const std::exception& e) { return e.what(); }

}  // namespace flowserve::onnxruntime
