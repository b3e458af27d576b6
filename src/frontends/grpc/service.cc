#include "frontends/grpc/service.h"

#include <algorithm>

#include "common/datatype.h"
#include "core/server.h"
#include "frontends/grpc/shared_memory_rpc.h"
#include "model_config.pb.h"

namespace flowserve::grpc_frontend {

using namespace inference;  // NOLINT: every message here comes from the service proto

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

namespace {

void AddTensorMetadata(const std::string& name, int data_type,
                       const google::protobuf::RepeatedField<int64_t>& dims, bool batched,
                       ModelMetadataResponse::TensorMetadata* out) {
  out->set_name(name);
  out->set_datatype(std::string(DataTypeName(static_cast<DataType>(data_type))));
  if (batched) out->add_shape(-1);
  out->mutable_shape()->Add(dims.begin(), dims.end());
}

void SetDuration(const DurationStat& from, StatisticDuration* to) {
  to->set_count(from.count.load(std::memory_order_relaxed));
  to->set_ns(from.ns.load(std::memory_order_relaxed));
}

void FillStatistics(const ModelVersion& model, inference::ModelStatistics* out) {
  const ModelStatistics& s = model.stats();
  out->set_name(model.name());
  out->set_version(std::to_string(model.version()));
  out->set_last_inference(s.last_inference_ms.load(std::memory_order_relaxed));
  out->set_inference_count(s.inference_count.load(std::memory_order_relaxed));
  out->set_execution_count(s.execution_count.load(std::memory_order_relaxed));
  InferStatistics* i = out->mutable_inference_stats();
  SetDuration(s.success, i->mutable_success());
  SetDuration(s.fail, i->mutable_fail());
  SetDuration(s.queue, i->mutable_queue());
  SetDuration(s.compute_input, i->mutable_compute_input());
  SetDuration(s.compute_infer, i->mutable_compute_infer());
  SetDuration(s.compute_output, i->mutable_compute_output());
  SetDuration(s.cache_hit, i->mutable_cache_hit());
  SetDuration(s.cache_miss, i->mutable_cache_miss());
  for (const BatchStatSnapshot& b : s.BatchStats()) {
    InferBatchStatistics* bs = out->add_batch_stats();
    bs->set_batch_size(b.batch_size);
    bs->mutable_compute_input()->set_count(b.count);
    bs->mutable_compute_input()->set_ns(b.compute_input_ns);
    bs->mutable_compute_infer()->set_count(b.count);
    bs->mutable_compute_infer()->set_ns(b.compute_infer_ns);
    bs->mutable_compute_output()->set_count(b.count);
    bs->mutable_compute_output()->set_ns(b.compute_output_ns);
  }
}

// Loaded versions of one model, ascending.
std::vector<std::shared_ptr<ModelVersion>> VersionsOf(const InferenceServer& server,
                                                      const std::string& name) {
  std::vector<std::shared_ptr<ModelVersion>> out;
  for (auto& m : server.LoadedModels()) {
    if (m->name() == name) out.push_back(m);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a->version() < b->version(); });
  return out;
}

Result<std::shared_ptr<ModelVersion>> Lookup(const InferenceServer& server, const std::string& name,
                                             const std::string& version) {
  auto v = ParseModelVersion(version);
  if (!v.ok()) return v.status();
  return server.GetModel(name, *v);
}

}  // namespace

Service::Service(InferenceServer* server, int infer_allocation_pool_size,
                 std::shared_ptr<const ApiAuth> auth)
    : server_(server),
      auth_(auth && auth->active() ? std::move(auth) : nullptr),
      pool_(std::make_shared<InferMessagePool>(
          static_cast<size_t>(std::max(0, infer_allocation_pool_size)))) {
  SetMessageAllocatorFor_ModelInfer(pool_.get());
}

namespace {

class Metadata final : public HeaderSource {
 public:
  explicit Metadata(const std::multimap<grpc::string_ref, grpc::string_ref>& md) : md_(md) {}
  std::string_view Get(std::string_view name) const override {
    auto it = md_.find(grpc::string_ref(name.data(), name.size()));
    return it == md_.end() ? std::string_view()
                           : std::string_view(it->second.data(), it->second.size());
  }

 private:
  const std::multimap<grpc::string_ref, grpc::string_ref>& md_;
};

// A stream refused before it starts: finished at once, reads nothing.
class RefusedStream : public grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse> {
 public:
  explicit RefusedStream(const Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

Status Service::Authorize(Ctx* ctx, ApiGroup group) const {
  if (!auth_) return Status::Ok();
  return auth_->Check(group, Metadata(ctx->client_metadata()));
}

// ---- health and metadata ------------------------------------------------------------

grpc::ServerUnaryReactor* Service::ServerLive(Ctx* ctx, const ServerLiveRequest*,
                                              ServerLiveResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kHealth);
  resp->set_live(server_->IsLive());
  return FinishNow(ctx, Status::Ok());
}

grpc::ServerUnaryReactor* Service::ServerReady(Ctx* ctx, const ServerReadyRequest*,
                                               ServerReadyResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kHealth);
  resp->set_ready(server_->IsReady());
  return FinishNow(ctx, Status::Ok());
}

grpc::ServerUnaryReactor* Service::ModelReady(Ctx* ctx, const ModelReadyRequest* req,
                                              ModelReadyResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kHealth);
  auto version = ParseModelVersion(req->version());
  if (!version.ok()) return FinishNow(ctx, version.status());
  // Like Triton: an unknown or unavailable model is simply not ready.
  resp->set_ready(server_->GetModel(req->name(), *version).ok());
  return FinishNow(ctx, Status::Ok());
}

grpc::ServerUnaryReactor* Service::ServerMetadata(Ctx* ctx, const ServerMetadataRequest*,
                                                  ServerMetadataResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kMetadata);
  resp->set_name(server_->options().server_id);  // --id, as tritonserver reports
  resp->set_version(kServerVersion);
  for (const auto& e : ServerExtensions()) resp->add_extensions(e);
  return FinishNow(ctx, Status::Ok());
}

grpc::ServerUnaryReactor* Service::ModelMetadata(Ctx* ctx, const ModelMetadataRequest* req,
                                                 ModelMetadataResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kMetadata);
  auto model = Lookup(*server_, req->name(), req->version());
  if (!model.ok()) return FinishNow(ctx, model.status());
  const inference::ModelConfig& config = (*model)->config();
  resp->set_name(config.name());
  for (const auto& v : VersionsOf(*server_, req->name())) {
    resp->add_versions(std::to_string(v->version()));
  }
  resp->set_platform(config.platform().empty() ? config.backend() : config.platform());
  bool batched = config.max_batch_size() > 0;
  for (const auto& in : config.input()) {
    AddTensorMetadata(in.name(), in.data_type(), in.dims(), batched, resp->add_inputs());
  }
  for (const auto& out : config.output()) {
    AddTensorMetadata(out.name(), out.data_type(), out.dims(), batched, resp->add_outputs());
  }
  return FinishNow(ctx, Status::Ok());
}

grpc::ServerUnaryReactor* Service::ModelConfig(Ctx* ctx, const ModelConfigRequest* req,
                                               ModelConfigResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kModelConfig);
  auto model = Lookup(*server_, req->name(), req->version());
  if (!model.ok()) return FinishNow(ctx, model.status());
  resp->mutable_config()->CopyFrom((*model)->config());
  return FinishNow(ctx, Status::Ok());
}

grpc::ServerUnaryReactor* Service::ModelStatistics(Ctx* ctx, const ModelStatisticsRequest* req,
                                                   ModelStatisticsResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kStatistics);
  std::vector<std::shared_ptr<ModelVersion>> models;
  if (req->name().empty()) {
    models = server_->LoadedModels();
    std::sort(models.begin(), models.end(), [](const auto& a, const auto& b) {
      return a->name() != b->name() ? a->name() < b->name() : a->version() < b->version();
    });
  } else if (!req->version().empty()) {
    auto model = Lookup(*server_, req->name(), req->version());
    if (!model.ok()) return FinishNow(ctx, model.status());
    models.push_back(*model);
  } else {
    models = VersionsOf(*server_, req->name());
    if (models.empty()) {
      // Not loaded: let the core say why, in its usual words.
      auto model = server_->GetModel(req->name(), -1);
      if (!model.ok()) return FinishNow(ctx, model.status());
      models.push_back(*model);
    }
  }
  for (const auto& m : models) FillStatistics(*m, resp->add_model_stats());
  return FinishNow(ctx, Status::Ok());
}

// ---- inference ----------------------------------------------------------------------

grpc::ServerUnaryReactor* Service::ModelInfer(Ctx* ctx, const ModelInferRequest* req,
                                              ModelInferResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kInference);
  return HandleModelInfer(server_, ctx, req, resp);
}

grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse>* Service::ModelStreamInfer(
    Ctx* ctx) {
  if (Status st = Authorize(ctx, ApiGroup::kInference); !st.ok()) return new RefusedStream(st);
  return NewStreamInferReactor(server_);
}

// ---- repository ---------------------------------------------------------------------

grpc::ServerUnaryReactor* Service::RepositoryIndex(Ctx* ctx, const RepositoryIndexRequest* req,
                                                   RepositoryIndexResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kModelRepository);
  if (!req->repository_name().empty()) {
    return FinishNow(ctx, InvalidArgument("'repository_name' is not supported: the server "
                                          "searches every model repository"));
  }
  for (const ModelIndexEntry& e : server_->RepositoryIndex(req->ready())) {
    auto* m = resp->add_models();
    m->set_name(e.name);
    m->set_version(e.version);
    m->set_state(e.state);
    m->set_reason(e.reason);
  }
  return FinishNow(ctx, Status::Ok());
}

// Loading and unloading take as long as the model needs; they run on their own thread
// (repository_calls_) so grpc's callback threads stay free for inference.
grpc::ServerUnaryReactor* Service::RepositoryModelLoad(Ctx* ctx,
                                                       const RepositoryModelLoadRequest* req,
                                                       RepositoryModelLoadResponse*) {
  FS_AUTHORIZE(ctx, ApiGroup::kModelRepository);
  if (!req->repository_name().empty()) {
    return FinishNow(ctx, InvalidArgument("'repository_name' is not supported"));
  }
  std::string config_json;
  for (const auto& [key, p] : req->parameters()) {
    if (key == "config") {
      if (p.parameter_choice_case() != ModelRepositoryParameter::kStringParam) {
        return FinishNow(ctx, InvalidArgument("parameter 'config' must be a JSON string"));
      }
      config_json = p.string_param();
    } else if (key.rfind("file:", 0) == 0) {
      return FinishNow(ctx, Unimplemented("model file overrides ('" + key +
                                          "') are not supported by this server yet"));
    } else {
      return FinishNow(ctx, InvalidArgument("unknown load parameter '" + key + "'"));
    }
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const bool posted = repository_calls_.Post(
      [server = server_, reactor, name = req->model_name(), config = std::move(config_json)] {
        reactor->Finish(ToGrpcStatus(server->LoadModel(name, config)));
      });
  if (!posted) reactor->Finish(ToGrpcStatus(Unavailable("the server is shutting down")));
  return reactor;
}

grpc::ServerUnaryReactor* Service::RepositoryModelUnload(Ctx* ctx,
                                                         const RepositoryModelUnloadRequest* req,
                                                         RepositoryModelUnloadResponse*) {
  FS_AUTHORIZE(ctx, ApiGroup::kModelRepository);
  if (!req->repository_name().empty()) {
    return FinishNow(ctx, InvalidArgument("'repository_name' is not supported"));
  }
  bool unload_dependents = false;
  for (const auto& [key, p] : req->parameters()) {
    if (key != "unload_dependents") {
      return FinishNow(ctx, InvalidArgument("unknown unload parameter '" + key + "'"));
    }
    if (p.parameter_choice_case() != ModelRepositoryParameter::kBoolParam) {
      return FinishNow(ctx, InvalidArgument("parameter 'unload_dependents' must be a bool"));
    }
    unload_dependents = p.bool_param();
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const bool posted = repository_calls_.Post(
      [server = server_, reactor, name = req->model_name(), unload_dependents] {
        reactor->Finish(ToGrpcStatus(server->UnloadModel(name, unload_dependents)));
      });
  if (!posted) reactor->Finish(ToGrpcStatus(Unavailable("the server is shutting down")));
  return reactor;
}

// ---- shared memory (logic in shared_memory_rpc.cc) -----------------------------------

grpc::ServerUnaryReactor* Service::SystemSharedMemoryStatus(
    Ctx* ctx, const SystemSharedMemoryStatusRequest* req, SystemSharedMemoryStatusResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kSharedMemory);
  return FinishNow(ctx,
                   grpc_frontend::SystemSharedMemoryStatus(server_->shared_memory(), *req, resp));
}
grpc::ServerUnaryReactor* Service::SystemSharedMemoryRegister(
    Ctx* ctx, const SystemSharedMemoryRegisterRequest* req, SystemSharedMemoryRegisterResponse*) {
  FS_AUTHORIZE(ctx, ApiGroup::kSharedMemory);
  return FinishNow(ctx, grpc_frontend::SystemSharedMemoryRegister(server_->shared_memory(), *req));
}
grpc::ServerUnaryReactor* Service::SystemSharedMemoryUnregister(
    Ctx* ctx, const SystemSharedMemoryUnregisterRequest* req,
    SystemSharedMemoryUnregisterResponse*) {
  FS_AUTHORIZE(ctx, ApiGroup::kSharedMemory);
  return FinishNow(ctx,
                   grpc_frontend::SystemSharedMemoryUnregister(server_->shared_memory(), *req));
}
grpc::ServerUnaryReactor* Service::CudaSharedMemoryStatus(Ctx* ctx,
                                                          const CudaSharedMemoryStatusRequest* req,
                                                          CudaSharedMemoryStatusResponse*) {
  FS_AUTHORIZE(ctx, ApiGroup::kSharedMemory);
  return FinishNow(ctx, grpc_frontend::CudaSharedMemoryStatus(*req));
}
grpc::ServerUnaryReactor* Service::CudaSharedMemoryRegister(
    Ctx* ctx, const CudaSharedMemoryRegisterRequest* req, CudaSharedMemoryRegisterResponse*) {
  FS_AUTHORIZE(ctx, ApiGroup::kSharedMemory);
  return FinishNow(ctx, grpc_frontend::CudaSharedMemoryRegister(*req));
}
grpc::ServerUnaryReactor* Service::CudaSharedMemoryUnregister(
    Ctx* ctx, const CudaSharedMemoryUnregisterRequest* req, CudaSharedMemoryUnregisterResponse*) {
  FS_AUTHORIZE(ctx, ApiGroup::kSharedMemory);
  return FinishNow(ctx, grpc_frontend::CudaSharedMemoryUnregister(*req));
}

}  // namespace flowserve::grpc_frontend
