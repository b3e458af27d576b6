// The ONNX Runtime backend, built as the module backends/onnxruntime/libflowserve_onnxruntime.so
// next to its own copy of libonnxruntime.so.1. Requests are bound to ORT tensors over the
// received bytes (no copy for a lone request; one concatenation for a batch) and outputs
// are handed back as views into the tensors ORT returned (no copy, split per request).
#include <cstring>
#include <filesystem>
#include <mutex>

#include "backends/backend.h"
#include "backends/backend_module.h"
#include "backends/backend_support.h"
#include "backends/onnxruntime/ort_config.h"
#include "backends/onnxruntime/ort_options.h"
#include "backends/onnxruntime/ort_runtime.h"
#include "backends/onnxruntime/ort_session.h"
#include "backends/sequence_tensors.h"
#include "common/logging.h"
#include "common/tensor.h"
#include "model_config.pb.h"

namespace flowserve::onnxruntime {
namespace {

struct InputSpec {
  std::string name;
  DataType dtype = DataType::kInvalid;
  ONNXTensorElementDataType ort_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
};

struct OutputSpec {
  std::string name;
  DataType dtype = DataType::kInvalid;
  ONNXTensorElementDataType ort_type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
};

struct PrepackedDeleter {
  void operator()(OrtPrepackedWeightsContainer* p) const {
    Ort::GetApi().ReleasePrepackedWeightsContainer(p);
  }
};

// Immutable after load; shared by every instance of one model version.
struct ModelInfo {
  std::string label;  // "model 'x' version 1"
  OrtOptions options;
  bool batching = false;
  std::vector<InputSpec> inputs;
  std::vector<OutputSpec> outputs;
  // Sessions of one model version share their pre-packed weights (the layouts MLAS
  // kernels repack initializers into), so N sessions do not hold N packed copies.
  std::unique_ptr<OrtPrepackedWeightsContainer, PrepackedDeleter> prepacked;
};

bool Wanted(const InferenceRequest& r, const std::string& name) {
  if (r.outputs.empty()) return true;
  for (const auto& o : r.outputs)
    if (o.name == name) return true;
  return false;
}

// Where a lone request's bytes cannot be used in place, and a batch's parts are joined.
// Reused across runs so a steady load allocates nothing.
struct Scratch {
  std::vector<std::unique_ptr<char[]>> buffers;
  std::vector<size_t> sizes;

  char* Get(size_t i, size_t n) {
    if (buffers.size() <= i) {
      buffers.resize(i + 1);
      sizes.resize(i + 1, 0);
    }
    if (sizes[i] < n || !buffers[i]) {
      buffers[i] = std::make_unique_for_overwrite<char[]>(std::max<size_t>(n, 64));
      sizes[i] = std::max<size_t>(n, 64);
    }
    return buffers[i].get();
  }
};

class OrtInstance : public BackendInstance {
 public:
  OrtInstance(std::shared_ptr<const ModelInfo> info, std::shared_ptr<Ort::Session> session)
      : info_(std::move(info)),
        session_(std::move(session)),
        memory_(Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault)) {
    for (const auto& [k, v] : info_->options.run_entries)
      run_options_.AddConfigEntry(k.c_str(), v.c_str());
  }

  void Execute(std::span<InferenceRequest* const> requests,
               std::span<InferenceResponse* const> responses) override {
    RunBatchOrEach(info_->batching, requests, responses,
                   [this](auto reqs, auto resps) { Run(reqs, resps); });
  }

 private:
  void Run(std::span<InferenceRequest* const> requests,
           std::span<InferenceResponse* const> responses) {
    Status st;
    try {
      st = RunOrThrow(requests, responses);
    } catch (const Ort::Exception& e) {
      // ORT says when the inputs were at fault (a value the config's dims let through but
      // the graph rejects): that is the client's error, not the server's.
      std::string text = "onnxruntime execution failed: " + ExceptionText(e);
      st = e.GetOrtErrorCode() == ORT_INVALID_ARGUMENT ? InvalidArgument(std::move(text))
                                                       : Internal(std::move(text));
    } catch (const std::exception& e) {
      st = Internal("onnxruntime execution failed: " + ExceptionText(e));
    } catch (...) {
      st = Internal("onnxruntime execution failed with an unknown exception");
    }
    if (!st.ok()) {
      for (auto* resp : responses) {
        resp->outputs.clear();
        resp->status = st;
      }
    }
  }

  // The ORT shape of an input over these requests, from its first part.
  std::vector<int64_t> InputShape(const Tensor& first, int64_t total_batch, size_t parts) const {
    // The core applied any `reshape` already: the request's shape is the model's.
    std::vector<int64_t> shape = first.shape;
    if (parts > 1) shape[0] = total_batch;
    return shape;
  }

  // BYTES elements (4-byte little-endian length + data each) into an ORT string tensor.
  // The layouts differ, so this is the one input conversion that copies.
  Ort::Value StringInput(const std::vector<const Tensor*>& parts,
                         const std::vector<int64_t>& shape) {
    Ort::AllocatorWithDefaultOptions allocator;
    Ort::Value v = Ort::Value::CreateTensor(allocator, shape.data(), shape.size(),
                                            ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING);
    size_t index = 0;
    for (const Tensor* t : parts) {
      const char* p = t->data;
      const char* end = t->data + t->byte_size;
      while (p + 4 <= end) {
        uint32_t len;
        std::memcpy(&len, p, 4);  // the validator has checked the framing
        p += 4;
        char* dst = v.GetResizedStringTensorElementBuffer(index++, len);
        if (len > 0) std::memcpy(dst, p, len);
        p += len;
      }
    }
    return v;
  }

  Status RunOrThrow(std::span<InferenceRequest* const> requests,
                    std::span<InferenceResponse* const> responses) {
    const ModelInfo& info = *info_;
    int64_t total_batch = 0;
    for (auto* r : requests) total_batch += r->batch_size;

    std::vector<const char*> in_names;
    std::vector<Ort::Value> in_values;
    in_names.reserve(info.inputs.size());
    in_values.reserve(info.inputs.size());
    std::vector<const Tensor*> parts;
    for (size_t i = 0; i < info.inputs.size(); ++i) {
      const InputSpec& in = info.inputs[i];
      parts.clear();
      for (auto* r : requests) {
        if (const Tensor* t = r->FindInput(in.name)) parts.push_back(t);
      }
      if (parts.empty()) continue;  // an optional input left out: the model's default applies
      std::vector<int64_t> shape = InputShape(*parts[0], total_batch, parts.size());
      if (in.dtype == DataType::kBytes) {
        in_values.push_back(StringInput(parts, shape));
        in_names.push_back(in.name.c_str());
        continue;
      }
      size_t bytes = 0;
      for (const Tensor* t : parts) bytes += t->byte_size;
      char* data;
      const size_t align = DataTypeSize(in.dtype);
      if (parts.size() == 1 && parts[0]->data != nullptr &&
          reinterpret_cast<uintptr_t>(parts[0]->data) % align == 0) {
        // ORT only reads inputs: the request's own bytes are bound in place.
        data = const_cast<char*>(parts[0]->data);
      } else {
        // Kernels may assume element alignment, and a binary body can put a tensor
        // anywhere; a batch needs one buffer anyway.
        data = scratch_.Get(i, bytes);
        size_t off = 0;
        for (const Tensor* t : parts) {
          if (t->byte_size > 0) std::memcpy(data + off, t->data, t->byte_size);
          off += t->byte_size;
        }
      }
      in_values.push_back(
          Ort::Value::CreateTensor(memory_, data, bytes, shape.data(), shape.size(), in.ort_type));
      in_names.push_back(in.name.c_str());
    }

    // Only what some request asks for (every config output when one asks for nothing).
    std::vector<size_t> out_index;
    for (size_t j = 0; j < info.outputs.size(); ++j) {
      for (auto* r : requests) {
        if (Wanted(*r, info.outputs[j].name)) {
          out_index.push_back(j);
          break;
        }
      }
    }
    std::vector<const char*> out_names;
    for (size_t j : out_index) out_names.push_back(info.outputs[j].name.c_str());

    std::vector<Ort::Value> results =
        session_->Run(run_options_, in_names.data(), in_values.data(), in_values.size(),
                      out_names.data(), out_names.size());

    for (size_t k = 0; k < out_index.size(); ++k) {
      FS_RETURN_IF_ERROR(SplitOutput(info.outputs[out_index[k]], std::move(results[k]), total_batch,
                                     requests, responses));
    }
    return Status::Ok();
  }

  // Hands one ORT output to every request that wants it: views into the one buffer, which
  // stays alive until the last response referencing it is gone.
  Status SplitOutput(const OutputSpec& spec, Ort::Value value, int64_t total_batch,
                     std::span<InferenceRequest* const> requests,
                     std::span<InferenceResponse* const> responses) {
    if (!value.IsTensor()) {
      return Internal("output '" + spec.name + "': the model returned a non-tensor value");
    }
    auto type_shape = value.GetTensorTypeAndShapeInfo();
    const ONNXTensorElementDataType got = type_shape.GetElementType();
    if (got != spec.ort_type) {
      return Internal("output '" + spec.name + "': the model returned " + OrtTypeName(got) +
                      " where the config says " + std::string(DataTypeConfigName(spec.dtype)));
    }
    const std::vector<int64_t> shape = type_shape.GetShape();
    const bool batching = info_->batching;
    if (batching && (shape.empty() || shape[0] != total_batch)) {
      return Internal("output '" + spec.name + "' has shape " + ShapeString(shape) +
                      "; expected the batch size " + std::to_string(total_batch) + " first");
    }
    const int64_t elements = ElementCount(shape);
    if (elements < 0) return Internal("output '" + spec.name + "' has shape " + ShapeString(shape));
    const int64_t per_item = batching ? (total_batch > 0 ? elements / total_batch : 0) : elements;

    // The model's shape past the batch dim; the core turns it into the config's dims
    // when the output has a `reshape`.
    std::vector<int64_t> tail(shape.begin() + (batching ? 1 : 0), shape.end());

    auto holder = std::make_shared<Ort::Value>(std::move(value));
    const bool strings = spec.dtype == DataType::kBytes;
    std::vector<size_t> offsets;
    std::string content;
    if (strings) {
      // ORT keeps strings as std::string objects; KServe's BYTES layout needs each with its
      // length in front, so strings are the one output that is copied.
      content.resize(holder->GetStringTensorDataLength());
      offsets.resize(static_cast<size_t>(elements));
      if (elements > 0) {
        char dummy = 0;
        holder->GetStringTensorContent(content.empty() ? &dummy : content.data(), content.size(),
                                       offsets.data(), offsets.size());
      }
    }
    const size_t elem_size = DataTypeSize(spec.dtype);
    const char* base = strings ? nullptr : static_cast<const char*>(holder->GetTensorRawData());

    int64_t row = 0;
    for (size_t k = 0; k < requests.size(); ++k) {
      const InferenceRequest& r = *requests[k];
      const int64_t rows = batching ? r.batch_size : 1;
      if (Wanted(r, spec.name)) {
        Tensor t;
        t.name = spec.name;
        t.dtype = spec.dtype;
        if (batching) t.shape.push_back(rows);
        t.shape.insert(t.shape.end(), tail.begin(), tail.end());
        const int64_t first = row * per_item;
        const int64_t count = rows * per_item;
        if (strings) {
          size_t n = 0;
          for (int64_t e = first; e < first + count; ++e) {
            size_t end = e + 1 < elements ? offsets[e + 1] : content.size();
            n += 4 + (end - offsets[e]);
          }
          char* out = AllocateTensorData(t, n);
          for (int64_t e = first; e < first + count; ++e) {
            size_t end = e + 1 < elements ? offsets[e + 1] : content.size();
            uint32_t len = static_cast<uint32_t>(end - offsets[e]);
            std::memcpy(out, &len, 4);
            if (len > 0) std::memcpy(out + 4, content.data() + offsets[e], len);
            out += 4 + len;
          }
        } else {
          t.data = base + static_cast<size_t>(first) * elem_size;
          t.byte_size = static_cast<size_t>(count) * elem_size;
          t.owner = holder;
        }
        responses[k]->outputs.push_back(std::move(t));
      }
      row += rows;
    }
    return Status::Ok();
  }

  std::shared_ptr<const ModelInfo> info_;
  std::shared_ptr<Ort::Session> session_;
  Ort::MemoryInfo memory_;
  Ort::RunOptions run_options_;
  Scratch scratch_;
};

class OrtModel : public BackendModel {
 public:
  OrtModel(std::shared_ptr<const ModelInfo> info, std::shared_ptr<Ort::Session> first)
      : info_(std::move(info)), first_(std::move(first)) {}

  Result<std::unique_ptr<BackendInstance>> CreateInstance(const InstanceSpec& spec) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::shared_ptr<Ort::Session> session;
    if (info_->options.share_session) {
      session = first_;
    } else if (!handed_first_) {
      session = first_;
      handed_first_ = true;
      first_.reset();  // this instance owns it now; later ones open their own
    } else {
      auto opened = OpenSession(info_->options, info_->prepacked.get());
      if (!opened.ok()) return opened.status();
      session = std::move(opened).value();
    }
    try {
      FS_LOG_VERBOSE(1, "{}: instance {} ready ({} session, {} intra-op thread(s))", info_->label,
                     spec.name, info_->options.share_session ? "shared" : "own",
                     info_->options.intra_op_threads);
      return std::unique_ptr<BackendInstance>(new OrtInstance(info_, std::move(session)));
    } catch (const std::exception& e) {
      return Internal(info_->label + ": cannot create instance " + spec.name + ": " +
                      ExceptionText(e));
    }
  }

 private:
  std::shared_ptr<const ModelInfo> info_;
  std::mutex mu_;
  std::shared_ptr<Ort::Session> first_;
  bool handed_first_ = false;
};

class OnnxRuntimeBackend : public Backend {
 public:
  Result<std::unique_ptr<BackendModel>> LoadModel(const ModelLoadContext& ctx) override {
    FS_RETURN_IF_ERROR(InitOrtApi());
    try {
      return Load(ctx);
    } catch (const std::exception& e) {
      return Internal("onnxruntime: " + ExceptionText(e));
    }
  }

  Status AutoCompleteConfig(const ModelLoadContext& ctx, inference::ModelConfig& config) override {
    FS_RETURN_IF_ERROR(InitOrtApi());
    try {
      return AutoComplete(ctx, config);
    } catch (const std::exception& e) {
      return Internal("onnxruntime auto-complete: " + ExceptionText(e));
    }
  }

 private:
  static bool Complete(const inference::ModelConfig& c) {
    if (c.input().empty() || c.output().empty()) return false;
    for (const auto& in : c.input())
      if (in.data_type() == inference::TYPE_INVALID || (in.dims().empty() && !in.has_reshape()))
        return false;
    for (const auto& out : c.output())
      if (out.data_type() == inference::TYPE_INVALID || (out.dims().empty() && !out.has_reshape()))
        return false;
    return true;
  }

  Status AutoComplete(const ModelLoadContext& ctx, inference::ModelConfig& config) {
    auto dmbs = DefaultMaxBatchSize(ctx.backend_config);
    if (!dmbs.ok()) return dmbs.status();
    // A config that says everything, batching included, needs nothing from the model
    // (LoadModel checks it against the model anyway); only the default batcher is added.
    if (Complete(config) && config.max_batch_size() > 0) {
      if (config.max_batch_size() > 1 && !config.has_dynamic_batching() &&
          !config.has_sequence_batching() && !config.has_ensemble_scheduling()) {
        config.mutable_dynamic_batching();
      }
      return Status::Ok();
    }
    // Opening a session costs about as much as the load itself (2 s for 100 MB here), so
    // the session opened to read the tensors is the one the load then serves with, when
    // the load would open it with the same options.
    auto options = ResolveOptions(ctx);
    if (!options.ok()) return options.status();
    auto session = OpenSession(*options, nullptr);
    if (!session.ok()) return session.status();
    SessionIo io = ReadSessionIo(**session);
    FS_RETURN_IF_ERROR(CompleteConfig(config, io, *dmbs, options->model_path));
    if (!NeedsPrepacked(*options, ctx.total_instance_count)) {
      std::lock_guard<std::mutex> lock(prepared_mu_);
      prepared_[options->model_path] =
          Prepared{*options, FileStamp(options->model_path), std::move(session).value()};
    }
    return Status::Ok();
  }

  static bool NeedsPrepacked(const OrtOptions& o, int instances) {
    return !o.share_session && instances > 1;
  }

  static std::string FileStamp(const std::string& path) {
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    auto time = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
    return std::to_string(size) + "@" + std::to_string(time);
  }

  static bool SameSession(const OrtOptions& a, const OrtOptions& b) {
    return a.model_path == b.model_path && a.intra_op_threads == b.intra_op_threads &&
           a.inter_op_threads == b.inter_op_threads &&
           a.parallel_execution == b.parallel_execution && a.graph_level == b.graph_level &&
           a.enable_mem_arena == b.enable_mem_arena &&
           a.enable_mem_pattern == b.enable_mem_pattern && a.share_session == b.share_session &&
           a.session_entries == b.session_entries;
  }

  // The session auto-complete opened for this file with these options, if any; either
  // way the slot is emptied, so an unused session lives no longer than the next load.
  std::shared_ptr<Ort::Session> TakePrepared(const OrtOptions& o) {
    std::lock_guard<std::mutex> lock(prepared_mu_);
    auto it = prepared_.find(o.model_path);
    if (it == prepared_.end()) return nullptr;
    Prepared p = std::move(it->second);
    prepared_.erase(it);
    if (!SameSession(p.options, o) || p.stamp != FileStamp(o.model_path)) return nullptr;
    return p.session;
  }

  Result<std::unique_ptr<BackendModel>> Load(const ModelLoadContext& ctx) {
    const auto& cfg = *ctx.config;
    auto info = std::make_shared<ModelInfo>();
    info->label = "model '" + ctx.model_name + "' version " + std::to_string(ctx.version);
    auto options = ResolveOptions(ctx);
    if (!options.ok()) return options.status();
    info->options = std::move(options).value();
    const std::string& path = info->options.model_path;

    Result<std::shared_ptr<Ort::Session>> session = TakePrepared(info->options);
    if (session.value()) {
      FS_LOG_VERBOSE(1, "{}: serving with the session auto-complete opened", info->label);
    } else {
      if (NeedsPrepacked(info->options, ctx.total_instance_count)) {
        OrtPrepackedWeightsContainer* c = nullptr;
        Ort::ThrowOnError(Ort::GetApi().CreatePrepackedWeightsContainer(&c));
        info->prepacked.reset(c);
      }
      session = OpenSession(info->options, info->prepacked.get());
      if (!session.ok()) return session.status();
    }
    SessionIo io = ReadSessionIo(**session);
    FS_RETURN_IF_ERROR(CheckConfig(cfg, io, path));

    info->batching = cfg.max_batch_size() > 0;
    for (const auto& in : cfg.input()) {
      InputSpec s;
      s.name = in.name();
      s.dtype = static_cast<DataType>(in.data_type());
      s.ort_type = *ToOrtType(s.dtype);  // CheckConfig matched it to a model type
      info->inputs.push_back(std::move(s));
    }
    for (const auto& out : cfg.output()) {
      OutputSpec s;
      s.name = out.name();
      s.dtype = static_cast<DataType>(out.data_type());
      s.ort_type = *ToOrtType(s.dtype);
      info->outputs.push_back(std::move(s));
    }
    // A stateful model's control and state tensors, bound by name like the config's.
    for (const auto& t : SequenceInputs(cfg)) {
      auto ort_type = ToOrtType(t.dtype);
      if (!ort_type) {
        return InvalidArgument("sequence input '" + t.name + "' has a type ONNX Runtime lacks");
      }
      info->inputs.push_back(InputSpec{t.name, t.dtype, *ort_type});
    }
    for (const auto& t : SequenceOutputs(cfg)) {
      auto ort_type = ToOrtType(t.dtype);
      if (!ort_type) {
        return InvalidArgument("state output '" + t.name + "' has a type ONNX Runtime lacks");
      }
      info->outputs.push_back(OutputSpec{t.name, t.dtype, *ort_type});
    }

    const auto& o = info->options;
    std::string sessions =
        ctx.total_instance_count == 1 ? "one session"
        : o.share_session
            ? "one session shared by " + std::to_string(ctx.total_instance_count) + " instances"
            : "a session per instance, pre-packed weights shared";
    FS_LOG_INFO(
        "{}: loaded {} with ONNX Runtime {} ({} graph optimization, {} execution, {} intra-op "
        "thread(s) per instance, {})",
        info->label, path, OrtVersion(), GraphLevelName(o.graph_level),
        o.parallel_execution ? "parallel" : "sequential", o.intra_op_threads, sessions);
    return std::unique_ptr<BackendModel>(new OrtModel(info, std::move(session).value()));
  }

  struct Prepared {
    OrtOptions options;
    std::string stamp;  // size and mtime of the file it was opened from
    std::shared_ptr<Ort::Session> session;
  };
  std::mutex prepared_mu_;
  std::map<std::string, Prepared> prepared_;  // by model path
};

}  // namespace
}  // namespace flowserve::onnxruntime

FLOWSERVE_DEFINE_BACKEND_MODULE(flowserve::onnxruntime::OnnxRuntimeBackend)
