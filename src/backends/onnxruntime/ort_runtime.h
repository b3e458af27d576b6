#pragma once
// ONNX Runtime as this module uses it: the versioned API, the one process-wide Env, type
// mapping and what a session says about its inputs and outputs. Includes ONNX Runtime's
// headers: only this folder's .cc files may include it.
// ORT_API_MANUAL_INIT is defined for every user of these headers (CMakeLists.txt): the
// API is bound by InitOrtApi, which can fail politely, not by a static initializer.
#include <onnxruntime_cxx_api.h>

#include <optional>
#include <string>
#include <vector>

#include "common/datatype.h"
#include "common/status.h"

namespace flowserve::onnxruntime {

// Binds the C++ wrappers to the library's API at the headers' version. Fails (instead of
// crashing later) when the loaded libonnxruntime is older than the headers. Idempotent.
Status InitOrtApi();

// The process-wide environment (logging and ORT's own state), made on first use. ORT's
// warnings and errors go to flowserve's log.
Ort::Env& OrtEnv();

// The library's version string ("1.30.0").
std::string OrtVersion();

std::optional<ONNXTensorElementDataType> ToOrtType(DataType dtype);
DataType FromOrtType(ONNXTensorElementDataType type);     // kInvalid when KServe has no such type
std::string OrtTypeName(ONNXTensorElementDataType type);  // "tensor(float)" style

// One input or output as the model declares it. Dynamic and symbolic dims are -1.
struct TensorInfo {
  std::string name;
  ONNXTensorElementDataType ort_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> dims;
  bool is_tensor = true;  // false for sequences, maps and optionals
};

struct SessionIo {
  std::vector<TensorInfo> inputs;  // required inputs (initializers excluded)
  std::vector<TensorInfo> outputs;
};

// Reads the session's declared inputs and outputs. Throws Ort::Exception.
SessionIo ReadSessionIo(const Ort::Session& session);

// An exception's text, as the message of a Status.
std::string ExceptionText(const std::exception& e);

}  // namespace flowserve::onnxruntime
