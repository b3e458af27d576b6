// The LibTorch (TorchScript) backend; built as the module
// backends/pytorch/libflowserve_pytorch.so, loaded when a model first names "pytorch".
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <mutex>

#include "backends/backend.h"
#include "backends/backend_module.h"
#include "backends/backend_support.h"
#include "backends/pytorch/pytorch_options.h"
#include "backends/pytorch/torch_module.h"
#include "backends/sequence_tensors.h"
#include "common/logging.h"
#include "model_config.pb.h"

namespace flowserve {
namespace pytorch {
namespace {

// Immutable after load; shared by every instance of one model version.
struct ModelInfo {
  std::string label;  // "model 'x' version 1"
  PytorchOptions options;
  Binding binding;
  bool batching = false;
  std::vector<std::string> input_names;
  std::vector<std::string> output_names;
  std::vector<DataType> output_types;
  std::vector<std::vector<int64_t>> output_dims;  // without the batch dim; empty: unchecked
  std::vector<std::optional<c10::IValue>> defaults;
};

std::string ShapeOf(const at::Tensor& t) { return ShapeString(t.sizes().vec()); }

// at::set_num_threads is process-wide state, but under OpenMP what a thread actually
// uses is its own OpenMP setting, which set_num_threads also writes for the calling
// thread. So each instance sets its share on its own execution thread. LibTorch would
// overwrite that on the thread's first parallel op (lazy init from the process-wide
// value), so the lazy init is forced first.
void ApplyIntraOpThreads(int n) {
  thread_local int applied = 0;
  if (applied == n) return;
  at::internal::lazy_init_num_threads();
  at::set_num_threads(n);
  applied = n;
}

// The inter-op pool is created once per process and can be sized only before that.
void ApplyInterOpThreads(int n, const std::string& label) {
  static std::mutex mu;
  static int configured = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (n <= 0 || n == configured) return;
  if (configured != 0) {
    FS_LOG_WARNING(
        "{}: INTER_OP_THREAD_COUNT={} ignored; the process-wide inter-op pool "
        "already has {} threads",
        label, n, configured);
    return;
  }
  try {
    at::set_num_interop_threads(n);
    configured = n;
  } catch (const std::exception& e) {
    FS_LOG_WARNING("{}: INTER_OP_THREAD_COUNT={} ignored: {}", label, n, ExceptionText(e));
  }
}

at::Tensor WrapInput(const Tensor& t) {
  auto options = at::TensorOptions().dtype(*ToTorchType(t.dtype));
  if (t.data == nullptr || t.byte_size == 0) return at::empty(t.shape, options);
  void* data = const_cast<char*>(t.data);
  at::Tensor view = at::from_blob(data, t.shape, options);
  // Kernels may assume element alignment; a binary body can put a tensor anywhere.
  if (reinterpret_cast<uintptr_t>(data) % DataTypeSize(t.dtype) != 0) return view.clone();
  return view;
}

class PytorchInstance : public BackendInstance {
 public:
  PytorchInstance(std::shared_ptr<const ModelInfo> info, torch::jit::Module module)
      : info_(std::move(info)), module_(std::move(module)) {}

  void Execute(std::span<InferenceRequest* const> requests,
               std::span<InferenceResponse* const> responses) override {
    ApplyIntraOpThreads(info_->options.intra_op_threads);
    c10::InferenceMode inference_mode;
    RunBatchOrEach(info_->batching, requests, responses,
                   [this](auto reqs, auto resps) { Run(reqs, resps); });
  }

 private:
  void Run(std::span<InferenceRequest* const> requests,
           std::span<InferenceResponse* const> responses) {
    Status st;
    try {
      st = RunOrThrow(requests, responses);
    } catch (const std::exception& e) {
      st = Internal("pytorch execution failed: " + ExceptionText(e));
    }
    if (!st.ok()) {
      for (auto* resp : responses) {
        resp->outputs.clear();
        resp->status = st;
      }
    }
  }

  Status RunOrThrow(std::span<InferenceRequest* const> requests,
                    std::span<InferenceResponse* const> responses) {
    const ModelInfo& info = *info_;
    std::vector<c10::IValue> args(info.defaults.size());
    std::vector<bool> bound(args.size(), false);
    for (size_t i = 0; i < info.input_names.size(); ++i) {
      int a = info.binding.input_argument[i];
      std::vector<at::Tensor> parts;
      for (auto* r : requests) {
        const Tensor* t = r->FindInput(info.input_names[i]);
        if (t != nullptr) parts.push_back(WrapInput(*t));
      }
      if (parts.empty()) continue;  // an optional input left out: the default applies
      args[a] = parts.size() == 1 ? parts[0] : at::cat(parts, 0);
      bound[a] = true;
    }
    for (size_t a = 0; a < args.size(); ++a) {
      if (bound[a]) continue;
      if (!info.defaults[a]) {
        return InvalidArgument("no input given for forward argument " + std::to_string(a));
      }
      args[a] = *info.defaults[a];
    }

    c10::IValue result = module_.forward(std::move(args));

    int64_t total_batch = 0;
    for (auto* r : requests) total_batch += r->batch_size;
    std::vector<at::Tensor> outputs(info.output_names.size());
    for (size_t j = 0; j < outputs.size(); ++j) {
      auto out = Extract(result, j, total_batch);
      if (!out.ok()) return out.status();
      outputs[j] = std::move(out.value());
    }

    int64_t offset = 0;
    for (size_t k = 0; k < requests.size(); ++k) {
      const InferenceRequest& r = *requests[k];
      InferenceResponse& resp = *responses[k];
      for (size_t j = 0; j < outputs.size(); ++j) {
        const std::string& name = info.output_names[j];
        if (!Wanted(r, name)) continue;
        at::Tensor part = outputs[j];
        if (info.batching && requests.size() > 1) part = part.narrow(0, offset, r.batch_size);
        auto holder = std::make_shared<at::Tensor>(std::move(part));
        Tensor t;
        t.name = name;
        t.dtype = info.output_types[j];
        t.shape = holder->sizes().vec();
        t.data = static_cast<const char*>(holder->data_ptr());
        t.byte_size = holder->nbytes();
        t.owner = std::move(holder);
        resp.outputs.push_back(std::move(t));
      }
      offset += r.batch_size;
    }
    return Status::Ok();
  }

  static bool Wanted(const InferenceRequest& r, const std::string& name) {
    if (r.outputs.empty()) return true;
    for (const auto& o : r.outputs)
      if (o.name == name) return true;
    return false;
  }

  // The j-th config output taken from forward's result, checked against the config and
  // made contiguous so it can be handed out without a copy.
  Result<at::Tensor> Extract(const c10::IValue& result, size_t j, int64_t total_batch) const {
    const ModelInfo& info = *info_;
    const std::string& name = info.output_names[j];
    const OutputBinding& ob = info.binding.outputs[j];
    c10::IValue v;
    if (ob.index < 0) {
      if (!result.isGenericDict())
        return Internal("output '" + name + "': forward did not return a dict");
      auto dict = result.toGenericDict();
      auto it = dict.find(c10::IValue(ob.key));
      if (it == dict.end()) {
        std::string keys;
        for (const auto& e : dict) keys += (keys.empty() ? "" : ", ") + e.key().toStringRef();
        return Internal("output '" + name + "': the dict forward returned has no key '" + ob.key +
                        "' (keys: " + keys + ")");
      }
      v = it->value();
    } else if (result.isTensor()) {
      if (ob.index != 0) return Internal("output '" + name + "': forward returned one tensor");
      v = result;
    } else if (result.isTuple() || result.isList()) {
      size_t n =
          result.isTuple() ? result.toTupleRef().elements().size() : result.toListRef().size();
      if (static_cast<size_t>(ob.index) >= n) {
        return Internal("output '" + name + "' is result element " + std::to_string(ob.index) +
                        " but forward returned " + std::to_string(n) + " values");
      }
      v = result.isTuple() ? result.toTupleRef().elements()[ob.index]
                           : result.toListRef()[ob.index];
    } else {
      return Internal("output '" + name + "': forward returned " + result.tagKind());
    }
    if (!v.isTensor()) {
      return Internal("output '" + name + "': forward returned " + v.tagKind() +
                      " where a tensor was expected");
    }
    at::Tensor t = v.toTensor();
    DataType got = FromTorchType(t.scalar_type());
    if (got != info.output_types[j]) {
      return Internal("output '" + name + "': the module returned a " +
                      std::string(c10::toString(t.scalar_type())) + " tensor (" +
                      std::string(DataTypeConfigName(got)) + ") but the config says " +
                      std::string(DataTypeConfigName(info.output_types[j])));
    }
    if (t.layout() != at::kStrided) t = t.to_dense();
    t = t.contiguous();
    if (info.batching && (t.dim() == 0 || t.size(0) != total_batch)) {
      return Internal("output '" + name + "' has shape " + ShapeOf(t) +
                      "; expected the batch size " + std::to_string(total_batch) + " first");
    }
    const auto& dims = info.output_dims[j];
    if (!dims.empty()) {
      size_t skip = info.batching ? 1 : 0;
      bool ok = static_cast<size_t>(t.dim()) == dims.size() + skip;
      for (size_t d = 0; ok && d < dims.size(); ++d)
        ok = dims[d] < 0 || dims[d] == t.size(d + skip);
      if (!ok) {
        return Internal("output '" + name + "' has shape " + ShapeOf(t) +
                        " which does not match the config dims " + ShapeString(dims) +
                        (info.batching ? " after the batch dim" : ""));
      }
    }
    return t;
  }

  std::shared_ptr<const ModelInfo> info_;
  torch::jit::Module module_;
};

class PytorchModel : public BackendModel {
 public:
  PytorchModel(std::shared_ptr<const ModelInfo> info, torch::jit::Module first)
      : info_(std::move(info)), first_(std::move(first)) {}

  Result<std::unique_ptr<BackendInstance>> CreateInstance(const InstanceSpec& spec) override {
    std::lock_guard<std::mutex> lock(mu_);
    torch::jit::Module module;
    if (first_) {
      module = std::move(*first_);
      first_.reset();
    } else {
      // Each instance owns its module: optimized modules hold per-module state (e.g.
      // oneDNN weights) and cannot be re-saved, so the file is loaded again.
      auto loaded = LoadTorchModule(info_->options.model_path, info_->options.optimize);
      if (!loaded.ok()) return loaded.status();
      module = std::move(loaded->module);
    }
    FS_LOG_VERBOSE(1, "{}: instance {} ready with {} intra-op threads", info_->label, spec.name,
                   info_->options.intra_op_threads);
    return std::unique_ptr<BackendInstance>(new PytorchInstance(info_, std::move(module)));
  }

 private:
  std::shared_ptr<const ModelInfo> info_;
  std::mutex mu_;
  std::optional<torch::jit::Module> first_;
};

Status CheckTypes(const inference::ModelConfig& cfg) {
  auto check = [](const std::string& what, const std::string& name, int type) -> Status {
    auto dtype = static_cast<DataType>(type);
    if (ToTorchType(dtype)) return Status::Ok();
    return InvalidArgument(what + " '" + name + "' has " + std::string(DataTypeConfigName(dtype)) +
                           ", which LibTorch has no tensor type for (supported: TYPE_BOOL, "
                           "TYPE_UINT8, TYPE_INT8, TYPE_INT16, TYPE_INT32, TYPE_INT64, "
                           "TYPE_FP16, TYPE_BF16, TYPE_FP32, TYPE_FP64)");
  };
  for (const auto& in : cfg.input()) FS_RETURN_IF_ERROR(check("input", in.name(), in.data_type()));
  for (const auto& out : cfg.output())
    FS_RETURN_IF_ERROR(check("output", out.name(), out.data_type()));
  for (const auto& t : SequenceInputs(cfg))
    FS_RETURN_IF_ERROR(check("sequence input", t.name, static_cast<int>(t.dtype)));
  for (const auto& t : SequenceOutputs(cfg))
    FS_RETURN_IF_ERROR(check("state output", t.name, static_cast<int>(t.dtype)));
  return Status::Ok();
}

// TorchScript records forward's argument names but neither dtypes nor dims, so a config
// without inputs or outputs cannot be completed: the error lists what the module tells
// and what the user must add.
std::string MissingTensorsHelp(const inference::ModelConfig& cfg, const Signature& sig) {
  std::string help;
  if (cfg.input_size() == 0) {
    help += " input [";
    const char* sep = " ";
    for (const auto& a : sig.args) {
      if (!a.is_tensor) continue;
      help += sep + std::string("{ name: \"") + a.name + "\" data_type: <TYPE> dims: [ ... ] }";
      sep = ", ";
    }
    help += " ]";
  }
  if (cfg.output_size() == 0) {
    size_t n = sig.result.kind == ReturnKind::kTuple ? sig.result.element_types.size() : 1;
    help += " output [";
    for (size_t i = 0; i < n; ++i) {
      help += std::string(i ? ", " : " ") + "{ name: \"OUTPUT__" + std::to_string(i) +
              "\" data_type: <TYPE> dims: [ ... ] }";
    }
    help += " ]";
  }
  return help;
}

class PytorchBackend : public Backend {
 public:
  Status AutoCompleteConfig(const ModelLoadContext& ctx, inference::ModelConfig& cfg) override {
    if (cfg.input_size() > 0 && cfg.output_size() > 0) return Status::Ok();
    auto options = ResolveOptions(ctx, false);
    if (!options.ok()) return options.status();
    auto loaded = LoadTorchModule(options->model_path, /*optimize=*/false);
    if (!loaded.ok()) return loaded.status();
    return InvalidArgument(
        "config.pbtxt declares no " +
        std::string(cfg.input_size() == 0
                        ? (cfg.output_size() == 0 ? "inputs or outputs" : "inputs")
                        : "outputs") +
        ", and " + options->model_path + " (" + loaded->signature.ToString() +
        ") does not record data types or dims: add to config.pbtxt" +
        MissingTensorsHelp(cfg, loaded->signature));
  }

  Result<std::unique_ptr<BackendModel>> LoadModel(const ModelLoadContext& ctx) override {
    const auto& cfg = *ctx.config;
    auto info = std::make_shared<ModelInfo>();
    info->label = "model '" + ctx.model_name + "' version " + std::to_string(ctx.version);
    FS_RETURN_IF_ERROR(CheckTypes(cfg));
    auto options = ResolveOptions(ctx, torch::cuda::is_available());
    if (!options.ok()) return options.status();
    info->options = std::move(options.value());
    ApplyInterOpThreads(info->options.inter_op_threads, info->label);

    auto loaded = LoadTorchModule(info->options.model_path, info->options.optimize);
    if (!loaded.ok()) return loaded.status();

    for (const auto& in : cfg.input()) info->input_names.push_back(in.name());
    for (const auto& out : cfg.output()) {
      info->output_names.push_back(out.name());
      info->output_types.push_back(static_cast<DataType>(out.data_type()));
      // With a reshape the module's shape is not the config's; only the dtype is checked.
      info->output_dims.push_back(out.has_reshape()
                                      ? std::vector<int64_t>{}
                                      : std::vector<int64_t>(out.dims().begin(), out.dims().end()));
    }
    // A stateful model also takes the sequence batcher's control and state inputs and
    // returns its state outputs.
    for (const auto& t : SequenceInputs(cfg)) info->input_names.push_back(t.name);
    for (const auto& t : SequenceOutputs(cfg)) {
      info->output_names.push_back(t.name);
      info->output_types.push_back(t.dtype);
      info->output_dims.push_back(t.dims);
    }
    auto binding = BindSignature(info->input_names, info->output_names, loaded->signature);
    if (!binding.ok()) return binding.status();
    info->binding = std::move(binding.value());
    info->batching = cfg.max_batch_size() > 0;
    info->defaults = loaded->defaults;

    FS_LOG_INFO("{}: loaded {} ({}; {}); {}; {} intra-op thread(s) per instance", info->label,
                info->options.model_path, loaded->optimization, loaded->signature.ToString(),
                info->binding.description, info->options.intra_op_threads);
    return std::unique_ptr<BackendModel>(new PytorchModel(info, std::move(loaded->module)));
  }
};

}  // namespace
}  // namespace pytorch
}  // namespace flowserve

FLOWSERVE_DEFINE_BACKEND_MODULE(flowserve::pytorch::PytorchBackend)
