#include "backends/pytorch/argument_binding.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace flowserve::pytorch {
namespace {

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out + "]";
}

// "<name>__<i>": Triton's rule for any tensor, which lets a stateful model's control
// and state tensors (START__1, INPUT_STATE__3) bind by position like INPUT__0.
std::optional<int> AnyIndexedName(std::string_view name) {
  const size_t sep = name.rfind("__");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  std::string_view digits = name.substr(sep + 2);
  int value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || value < 0)
    return std::nullopt;
  return value;
}

// Every name indexed with `prefix` (or "<any name>__<i>"), or nullopt. Indices must be
// exactly [0, n).
Result<std::optional<std::vector<int>>> AllIndexed(const std::vector<std::string>& names,
                                                   std::string_view prefix) {
  std::vector<int> indices;
  for (const auto& n : names) {
    auto i = IndexedName(n, prefix);
    if (!i) i = AnyIndexedName(n);
    if (!i) return std::optional<std::vector<int>>();
    indices.push_back(*i);
  }
  if (names.empty()) return std::optional<std::vector<int>>();
  std::vector<int> sorted = indices;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i] != static_cast<int>(i)) {
      return InvalidArgument("indexed " + std::string(prefix) + " names " + JoinNames(names) +
                             " must cover indices [0, " + std::to_string(names.size()) +
                             ") with no gaps or repeats");
    }
  }
  return std::optional<std::vector<int>>(indices);
}

Status BindInputs(const std::vector<std::string>& inputs, const Signature& sig, Binding& b,
                  std::string& how) {
  const auto& args = sig.args;
  auto indexed = AllIndexed(inputs, "INPUT");
  if (!indexed.ok()) return indexed.status();
  if (indexed.value()) {
    b.input_argument = *indexed.value();
    how = "by index";
  } else {
    bool all_named = !inputs.empty();
    std::vector<int> by_name;
    for (const auto& n : inputs) {
      auto it = std::find_if(args.begin(), args.end(), [&](const auto& a) { return a.name == n; });
      if (it == args.end()) {
        all_named = false;
        break;
      }
      by_name.push_back(static_cast<int>(it - args.begin()));
    }
    if (all_named) {
      b.input_argument = by_name;
      how = "by argument name";
    } else {
      for (size_t i = 0; i < inputs.size(); ++i) b.input_argument.push_back(static_cast<int>(i));
      how = "by config order (names are neither <name>__<i> nor forward's argument names)";
    }
  }
  if (inputs.size() > args.size()) {
    return InvalidArgument("config has " + std::to_string(inputs.size()) + " inputs " +
                           JoinNames(inputs) + " but forward takes " + std::to_string(args.size()) +
                           " arguments");
  }
  std::vector<bool> bound(args.size(), false);
  for (size_t i = 0; i < inputs.size(); ++i) {
    int a = b.input_argument[i];
    if (a >= static_cast<int>(args.size())) {
      return InvalidArgument("input '" + inputs[i] + "' names argument " + std::to_string(a) +
                             " but forward takes " + std::to_string(args.size()) +
                             (args.size() == 1 ? " argument" : " arguments"));
    }
    if (!args[a].is_tensor) {
      return InvalidArgument("input '" + inputs[i] + "' binds to argument '" + args[a].name +
                             "' of type " + args[a].type + ", which is not a tensor");
    }
    bound[a] = true;
  }
  for (size_t a = 0; a < args.size(); ++a) {
    if (!bound[a] && !args[a].has_default) {
      return InvalidArgument("forward argument '" + args[a].name + "' has no default and no " +
                             "config input binds to it (config inputs " + JoinNames(inputs) +
                             ", bound " + how + ")");
    }
  }
  return Status::Ok();
}

Status BindOutputs(const std::vector<std::string>& outputs, const Signature& sig, Binding& b,
                   std::string& how) {
  const auto& r = sig.result;
  if (r.kind == ReturnKind::kOther) {
    return InvalidArgument("forward returns " + r.type +
                           "; supported: Tensor, a tuple or list of tensors, Dict[str, Tensor]");
  }
  if (r.kind == ReturnKind::kDict) {
    for (const auto& n : outputs) b.outputs.push_back(OutputBinding{-1, n});
    how = "by dict key";
    return Status::Ok();
  }
  auto indexed = AllIndexed(outputs, "OUTPUT");
  if (!indexed.ok()) return indexed.status();
  if (indexed.value()) {
    for (int i : *indexed.value()) b.outputs.push_back(OutputBinding{i, ""});
    how = "by index";
  } else {
    for (size_t i = 0; i < outputs.size(); ++i)
      b.outputs.push_back(OutputBinding{static_cast<int>(i), ""});
    how = "by config order";
  }
  // A list's length is only known at run time; tensors and tuples are checked now.
  size_t available = r.kind == ReturnKind::kTensor  ? 1
                     : r.kind == ReturnKind::kTuple ? r.element_types.size()
                                                    : SIZE_MAX;
  if (outputs.size() > available) {
    return InvalidArgument("config has " + std::to_string(outputs.size()) + " outputs " +
                           JoinNames(outputs) + " but forward returns " +
                           std::to_string(available) + (available == 1 ? " tensor" : " values"));
  }
  if (r.kind == ReturnKind::kTuple) {
    for (size_t j = 0; j < outputs.size(); ++j) {
      int i = b.outputs[j].index;
      if (!r.element_is_tensor[i]) {
        return InvalidArgument("output '" + outputs[j] + "' binds to result element " +
                               std::to_string(i) + " of type " + r.element_types[i] +
                               ", which is not a tensor");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

std::string Signature::ToString() const {
  std::string s = "forward(";
  for (size_t i = 0; i < args.size(); ++i) {
    s += (i ? ", " : "") + args[i].name + ": " + args[i].type;
    if (args[i].has_default) s += " = <default>";
  }
  return s + ") -> " + result.type;
}

std::optional<int> IndexedName(std::string_view name, std::string_view prefix) {
  if (name.substr(0, prefix.size()) != prefix) return std::nullopt;
  name.remove_prefix(prefix.size());
  if (name.starts_with("__")) {
    name.remove_prefix(2);
  } else if (name.starts_with("_")) {
    name.remove_prefix(1);
  } else {
    return std::nullopt;
  }
  int value = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), value);
  if (ec != std::errc() || end != name.data() + name.size() || name.empty() || value < 0)
    return std::nullopt;
  return value;
}

Result<Binding> BindSignature(const std::vector<std::string>& inputs,
                              const std::vector<std::string>& outputs, const Signature& sig) {
  Binding b;
  std::string in_how, out_how;
  Status st = BindInputs(inputs, sig, b, in_how);
  if (st.ok()) st = BindOutputs(outputs, sig, b, out_how);
  if (!st.ok()) {
    return InvalidArgument(st.message() + "; the module's " + sig.ToString());
  }
  std::string d = "inputs bound " + in_how + ":";
  for (size_t i = 0; i < inputs.size(); ++i)
    d += " " + inputs[i] + "->" + sig.args[b.input_argument[i]].name;
  d += "; outputs bound " + out_how + ":";
  for (size_t j = 0; j < outputs.size(); ++j) {
    const auto& o = b.outputs[j];
    d += " " + outputs[j] + "<-" +
         (o.index < 0 ? "result[\"" + o.key + "\"]" : "result[" + std::to_string(o.index) + "]");
  }
  b.description = d;
  return b;
}

}  // namespace flowserve::pytorch
