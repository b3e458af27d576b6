#include "core/model_version.h"

#include "backends/backend.h"
#include "common/logging.h"
#include "core/cached_inference.h"
#include "core/ensemble_scheduler.h"
#include "core/model_warmup.h"
#include "core/request_validator.h"
#include "core/scheduler.h"
#include "core/sequence_batcher.h"
#include "model_config.pb.h"
#include "repository/model_repository.h"

namespace flowserve {
namespace {

// A backend model and the scheduler feeding its instances (the dynamic batcher, or
// the sequence batcher of a stateful model).
template <typename SchedulerT>
class BackendExecutor : public ModelExecutor {
 public:
  BackendExecutor(std::unique_ptr<BackendModel> model, std::unique_ptr<SchedulerT> scheduler)
      : model_(std::move(model)), scheduler_(std::move(scheduler)) {}
  ~BackendExecutor() override {
    // The scheduler's threads use the backend model's instances: stop them first.
    scheduler_.reset();
    model_.reset();
  }
  Status Enqueue(std::unique_ptr<InferenceRequest>& request) override {
    return scheduler_->Enqueue(request);
  }
  void Drain() override { scheduler_->Drain(); }
  size_t QueueSize() const override { return scheduler_->QueueSize(); }

 private:
  std::unique_ptr<BackendModel> model_;
  std::unique_ptr<SchedulerT> scheduler_;
};

}  // namespace

ModelVersion::ModelVersion(std::string name, int64_t version,
                           std::shared_ptr<const inference::ModelConfig> config,
                           std::string model_dir)
    : name_(std::move(name)),
      version_(version),
      config_(std::move(config)),
      model_dir_(std::move(model_dir)) {
  decoupled_ = config_->model_transaction_policy().decoupled();
  if (IsEnsemble()) return;
  for (const auto& in : config_->input()) has_reshape_ = has_reshape_ || in.has_reshape();
  for (const auto& out : config_->output()) has_reshape_ = has_reshape_ || out.has_reshape();
}

ModelVersion::~ModelVersion() { executor_.reset(); }

bool ModelVersion::IsEnsemble() const { return config_->platform() == "ensemble"; }

const std::vector<std::string>* ModelVersion::Labels(const std::string& output_name) const {
  auto it = labels_.find(output_name);
  return it == labels_.end() ? nullptr : &it->second;
}

Status ModelVersion::LoadLabels() {
  for (const auto& out : config_->output()) {
    if (out.label_filename().empty()) continue;
    auto labels = flowserve::LoadLabels(model_dir_, out.label_filename());
    if (!labels.ok()) return labels.status();
    labels_[out.name()] = std::move(labels.value());
  }
  return Status::Ok();
}

Status ModelVersion::Load(
    const std::map<std::string, std::map<std::string, std::string>>& backend_config,
    std::function<void(std::unique_ptr<InferenceRequest>)> dispatch) {
  const auto& cfg = *config_;
  FS_RETURN_IF_ERROR(LoadLabels());

  auto backend = FindBackend(cfg.backend());
  if (!backend.ok()) return backend.status();

  ModelLoadContext ctx;
  ctx.model_name = name_;
  ctx.version = version_;
  ctx.model_dir = model_dir_;
  ctx.version_dir = model_dir_ + "/" + std::to_string(version_);
  ctx.config = config_.get();
  ctx.dispatch = std::move(dispatch);
  ctx.set_unavailable = [this](const std::string& reason) { MarkUnavailable(reason); };
  auto bc = backend_config.find(cfg.backend());
  if (bc != backend_config.end()) ctx.backend_config = bc->second;
  int total = 0;
  for (const auto& g : cfg.instance_group()) total += std::max(1, g.count());
  ctx.total_instance_count = std::max(1, total);

  auto model = (*backend)->LoadModel(ctx);
  if (!model.ok()) return model.status();
  std::unique_ptr<BackendModel> backend_model = std::move(model.value());

  std::vector<std::unique_ptr<BackendInstance>> instances;
  int index = 0;
  for (const auto& g : cfg.instance_group()) {
    for (int i = 0; i < std::max(1, g.count()); ++i) {
      InstanceSpec spec;
      spec.name = g.name() + "_" + std::to_string(i);
      spec.index = index++;
      spec.kind = g.kind();
      auto inst = backend_model->CreateInstance(spec);
      if (!inst.ok()) return inst.status().WithContext("instance " + spec.name + ": ");
      FS_RETURN_IF_ERROR(RunWarmup(*this, *inst.value(), spec.name));
      instances.push_back(std::move(inst.value()));
    }
  }
  if (instances.empty()) {
    InstanceSpec spec;
    spec.name = name_ + "_0";
    auto inst = backend_model->CreateInstance(spec);
    if (!inst.ok()) return inst.status();
    FS_RETURN_IF_ERROR(RunWarmup(*this, *inst.value(), spec.name));
    instances.push_back(std::move(inst.value()));
  }
  if (cfg.has_sequence_batching()) {
    auto sequencer = SequenceBatcher::Create(this, std::move(instances));
    if (!sequencer.ok()) return sequencer.status();
    executor_ = std::make_unique<BackendExecutor<SequenceBatcher>>(std::move(backend_model),
                                                                   std::move(sequencer).value());
    return Status::Ok();
  }
  auto scheduler =
      std::make_unique<Scheduler>(this, BatchingPolicyFromConfig(*this), std::move(instances));
  executor_ =
      std::make_unique<BackendExecutor<Scheduler>>(std::move(backend_model), std::move(scheduler));
  return Status::Ok();
}

Status ModelVersion::LoadEnsemble(const EnsembleEnvironment& env) {
  FS_RETURN_IF_ERROR(LoadLabels());
  auto ensemble = EnsembleScheduler::Create(this, env);
  if (!ensemble.ok()) return ensemble.status();
  decoupled_ = decoupled_ || ensemble.value()->decoupled();
  executor_ = std::move(ensemble.value());
  return Status::Ok();
}

void ModelVersion::SetResponseCache(std::shared_ptr<ResponseCache> cache) {
  if (!config_->response_cache().enable()) return;
  const std::string refusal = ResponseCacheRefusal(*config_, cache != nullptr);
  if (!refusal.empty()) {
    FS_LOG_WARNING("model '{}' version {} enables response_cache, but it is not used: {}", name_,
                   version_, refusal);
    return;
  }
  static std::atomic<uint64_t> generations{0};
  response_cache_ = std::move(cache);
  cache_generation_ = ++generations;
}

Status ModelVersion::Enqueue(std::unique_ptr<InferenceRequest>& request) {
  if (decoupled_ && !request->multiple_responses) {
    // Triton's words, which clients match on.
    return Unimplemented(std::string(request->endpoint) +
                         " doesn't support models with decoupled transaction policy (model '" +
                         name_ + "' answers through gRPC ModelStreamInfer)");
  }
  FS_RETURN_IF_ERROR(ValidateRequest(*this, *request));
  if (response_cache_) {
    return EnqueueThroughCache(*this, *response_cache_, cache_generation_, *executor_, request);
  }
  return executor_->Enqueue(request);
}

void ModelVersion::MarkUnavailable(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(unavailable_mu_);
    unavailable_reason_ = reason;
  }
  unavailable_.store(true, std::memory_order_release);
  FS_LOG_ERROR("model '{}' version {} is UNAVAILABLE: {}", name_, version_, reason);
}

std::string ModelVersion::unavailable_reason() const {
  std::lock_guard<std::mutex> lock(unavailable_mu_);
  return unavailable_reason_;
}

void ModelVersion::Drain() {
  draining_.store(true, std::memory_order_release);
  if (executor_) executor_->Drain();
}

size_t ModelVersion::QueueSize() const { return executor_ ? executor_->QueueSize() : 0; }

}  // namespace flowserve
