#include "backends/pytorch/torch_module.h"

#include <torch/csrc/jit/api/module.h>

#include "common/logging.h"

namespace flowserve::pytorch {
namespace {

bool IsTensorType(const c10::TypePtr& t) {
  if (t->kind() == c10::TypeKind::TensorType) return true;
  if (auto opt = t->cast<c10::OptionalType>()) return IsTensorType(opt->getElementType());
  return false;
}

ReturnSpec DescribeResult(const c10::FunctionSchema& schema) {
  ReturnSpec r;
  if (schema.returns().size() != 1) {
    r.type = "(" + std::to_string(schema.returns().size()) + " values)";
    return r;
  }
  const c10::TypePtr& t = schema.returns()[0].type();
  r.type = t->annotation_str();
  if (t->kind() == c10::TypeKind::TensorType) {
    r.kind = ReturnKind::kTensor;
  } else if (auto tuple = t->cast<c10::TupleType>()) {
    r.kind = ReturnKind::kTuple;
    for (const auto& e : tuple->elements()) {
      r.element_types.push_back(e->annotation_str());
      r.element_is_tensor.push_back(e->kind() == c10::TypeKind::TensorType);
    }
  } else if (auto list = t->cast<c10::ListType>()) {
    if (list->getElementType()->kind() == c10::TypeKind::TensorType) r.kind = ReturnKind::kList;
  } else if (auto dict = t->cast<c10::DictType>()) {
    if (dict->getKeyType()->kind() == c10::TypeKind::StringType &&
        dict->getValueType()->kind() == c10::TypeKind::TensorType)
      r.kind = ReturnKind::kDict;
  }
  return r;
}

}  // namespace

std::string ExceptionText(const std::exception& e) {
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

Result<LoadedModule> LoadTorchModule(const std::string& path, bool optimize) {
  LoadedModule m;
  try {
    m.module = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    return InvalidArgument("cannot load TorchScript module " + path + ": " + ExceptionText(e));
  }
  auto forward = m.module.find_method("forward");
  if (!forward) return InvalidArgument("TorchScript module " + path + " has no forward method");
  const c10::FunctionSchema& schema = forward->function().getSchema();
  const auto& args = schema.arguments();
  for (size_t i = 1; i < args.size(); ++i) {  // 0 is self
    ArgumentSpec a;
    a.name = args[i].name();
    a.type = args[i].type()->annotation_str();
    a.is_tensor = IsTensorType(args[i].type());
    a.has_default = args[i].default_value().has_value();
    m.signature.args.push_back(a);
    m.defaults.push_back(args[i].default_value());
  }
  m.signature.result = DescribeResult(schema);

  m.module.eval();
  if (!optimize) {
    m.optimization = "not optimized (disabled by config)";
    return m;
  }
  try {
    torch::jit::Module frozen = torch::jit::freeze(m.module);
    m.module = torch::jit::optimize_for_inference(frozen);
    m.optimization = "frozen and optimized for inference";
  } catch (const std::exception& e) {
    // Freezing rejects some valid modules (e.g. ones that mutate attributes); they
    // still run unoptimized.
    m.optimization = "not optimized (" + ExceptionText(e).substr(0, 200) + ")";
    FS_LOG_WARNING("{}: freeze/optimize_for_inference failed, serving unoptimized: {}", path,
                   ExceptionText(e));
  }
  return m;
}

std::optional<at::ScalarType> ToTorchType(DataType dtype) {
  switch (dtype) {
    case DataType::kBool:
      return at::kBool;
    case DataType::kUint8:
      return at::kByte;
    case DataType::kInt8:
      return at::kChar;
    case DataType::kInt16:
      return at::kShort;
    case DataType::kInt32:
      return at::kInt;
    case DataType::kInt64:
      return at::kLong;
    case DataType::kFp16:
      return at::kHalf;
    case DataType::kBf16:
      return at::kBFloat16;
    case DataType::kFp32:
      return at::kFloat;
    case DataType::kFp64:
      return at::kDouble;
    default:
      return std::nullopt;
  }
}

DataType FromTorchType(at::ScalarType type) {
  switch (type) {
    case at::kBool:
      return DataType::kBool;
    case at::kByte:
      return DataType::kUint8;
    case at::kChar:
      return DataType::kInt8;
    case at::kShort:
      return DataType::kInt16;
    case at::kInt:
      return DataType::kInt32;
    case at::kLong:
      return DataType::kInt64;
    case at::kHalf:
      return DataType::kFp16;
    case at::kBFloat16:
      return DataType::kBf16;
    case at::kFloat:
      return DataType::kFp32;
    case at::kDouble:
      return DataType::kFp64;
    default:
      return DataType::kInvalid;
  }
}

}  // namespace flowserve::pytorch
