#pragma once
// Which config tensor goes to which argument of `forward`, and which part of its result
// is which config output. Pure logic over a plain description of the signature so the
// rules can be read (and changed) without touching LibTorch.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace flowserve::pytorch {

struct ArgumentSpec {
  std::string name;
  std::string type;  // TorchScript spelling: "Tensor", "Optional[Tensor]", "int", ...
  bool is_tensor = false;
  bool has_default = false;
};

enum class ReturnKind { kTensor, kTuple, kList, kDict, kOther };

struct ReturnSpec {
  ReturnKind kind = ReturnKind::kOther;
  std::string type;                        // the whole return type, for messages
  std::vector<std::string> element_types;  // kTuple: one per element
  std::vector<bool> element_is_tensor;     // kTuple: one per element
};

// `forward` without `self`.
struct Signature {
  std::vector<ArgumentSpec> args;
  ReturnSpec result;
  // "forward(x: Tensor, y: Tensor) -> (Tensor, Tensor)"
  std::string ToString() const;
};

struct OutputBinding {
  int index = -1;   // element of the returned tensor/tuple/list; -1 for a dict key
  std::string key;  // key in a returned dict
};

struct Binding {
  std::vector<int> input_argument;     // config input i -> forward argument index
  std::vector<OutputBinding> outputs;  // config output j -> where it is in the result
  std::string description;             // "INPUT__0 -> x, ...; OUTPUT__0 <- result[0]"
};

// `prefix` is "INPUT" or "OUTPUT"; accepts "<prefix>_<i>" and "<prefix>__<i>".
std::optional<int> IndexedName(std::string_view name, std::string_view prefix);

// Applies the binding rules: all indexed names bind by index (covering [0, n) with no
// gaps); else, for inputs, names that are all forward argument names bind by name; else
// config order. A returned dict binds outputs by key. Errors list the signature.
Result<Binding> BindSignature(const std::vector<std::string>& inputs,
                              const std::vector<std::string>& outputs, const Signature& sig);

}  // namespace flowserve::pytorch
