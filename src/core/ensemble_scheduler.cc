#include "core/ensemble_scheduler.h"

#include <algorithm>

#include "common/logging.h"
#include "core/inference_response.h"
#include "core/request_trace.h"
#include "core/response_finisher.h"
#include "model_config.pb.h"

namespace flowserve {

// One ensemble request in progress. Shared by its step callbacks; the last one to let
// go ends the run, which is what Drain() waits for.
struct EnsembleScheduler::Run {
  EnsembleScheduler* owner;
  std::unique_ptr<InferenceRequest> request;
  std::mutex mu;
  std::vector<Tensor> tensors;  // by plan tensor index
  std::vector<int> waiting;     // per step: input tensors not yet available
  size_t steps_left = 0;
  bool finished = false;
  Status error;

  ~Run() { owner->RunEnded(); }
};

Result<std::unique_ptr<EnsembleScheduler>> EnsembleScheduler::Create(
    ModelVersion* model, const EnsembleEnvironment& env) {
  auto plan = BuildEnsemblePlan(model->config(), env.find_model);
  if (!plan.ok()) return plan.status();
  return std::unique_ptr<EnsembleScheduler>(
      new EnsembleScheduler(model, std::move(plan.value()), env.dispatch));
}

EnsembleScheduler::EnsembleScheduler(
    ModelVersion* model, EnsemblePlan plan,
    std::function<void(std::unique_ptr<InferenceRequest>)> dispatch)
    : model_(model), plan_(std::move(plan)), dispatch_(std::move(dispatch)) {}

EnsembleScheduler::~EnsembleScheduler() { Drain(); }

Status EnsembleScheduler::Enqueue(std::unique_ptr<InferenceRequest>& request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) {
      return Unavailable("ensemble '" + model_->name() + "' version " +
                         std::to_string(model_->version()) + " is unloading");
    }
    ++active_;
  }
  auto run = std::make_shared<Run>();
  run->owner = this;
  run->tensors.resize(plan_.tensor_names.size());
  run->steps_left = plan_.steps.size();
  run->waiting.resize(plan_.steps.size());
  for (size_t i = 0; i < plan_.steps.size(); ++i) {
    run->waiting[i] = static_cast<int>(plan_.steps[i].input_tensors.size());
  }
  request->enqueue_ns = NowNs();
  // An ensemble's own trace has no COMPUTE_* points: its steps carry them, each in a
  // child trace linked by parent_id.
  if (request->trace) {
    TraceQueued(*request->trace, model_->version(), request->enqueue_ns, request->inputs);
  }
  std::vector<int> ready;
  {
    std::lock_guard<std::mutex> lock(run->mu);
    for (size_t s = 0; s < plan_.steps.size(); ++s) {
      if (run->waiting[s] == 0) ready.push_back(static_cast<int>(s));  // reads nothing
    }
    for (int t : plan_.input_tensors) {
      // An absent optional input counts as available: a step that needs it will say so.
      const Tensor* in = request->FindInput(plan_.tensor_names[t]);
      if (in != nullptr) run->tensors[t] = *in;
      for (int s : plan_.consumers[t]) {
        if (--run->waiting[s] == 0) ready.push_back(s);
      }
    }
    run->request = std::move(request);
  }
  Start(run, ready);
  return Status::Ok();
}

void EnsembleScheduler::Start(const std::shared_ptr<Run>& run, const std::vector<int>& steps) {
  for (int s : steps) {
    const auto& step = plan_.steps[s];
    auto req = std::make_unique<InferenceRequest>();
    std::shared_ptr<RequestTrace> parent_trace;
    {
      std::lock_guard<std::mutex> lock(run->mu);
      if (run->finished) return;
      const InferenceRequest& outer = *run->request;
      req->model_name = step.model_name;
      req->model_version = step.model_version;
      req->id = outer.id;
      req->parameters = outer.parameters;
      req->priority = outer.priority;
      req->timeout_us = outer.timeout_us;
      parent_trace = outer.trace;
      for (const auto& b : step.inputs) {
        const Tensor& t = run->tensors[b.tensor];
        if (t.dtype == DataType::kInvalid) continue;  // an absent optional input
        Tensor view = t;                              // shares the producer's buffer
        view.name = b.model_tensor;
        req->inputs.push_back(std::move(view));
      }
    }
    for (const auto& b : step.outputs) req->outputs.push_back(RequestedOutput{b.model_tensor, 0});
    req->arrival_ns = NowNs();
    req->on_complete = [this, run, s](std::unique_ptr<InferenceResponse> resp) {
      OnStepDone(run, s, std::move(resp));
    };
    if (parent_trace) {
      req->trace = StartChildTrace(*parent_trace, step.model_name, req->arrival_ns);
      TraceUntilComplete(*req);
    }
    dispatch_(std::move(req));
  }
}

void EnsembleScheduler::OnStepDone(const std::shared_ptr<Run>& run, int s,
                                   std::unique_ptr<InferenceResponse> response) {
  const auto& step = plan_.steps[s];
  std::vector<int> ready;
  std::unique_lock<std::mutex> lock(run->mu);
  if (run->finished) return;
  if (!response->status.ok()) {
    run->error = Status(response->status.code(),
                        "in ensemble '" + model_->name() + "', step " + std::to_string(s) +
                            " (model '" + step.model_name + "'): " + response->status.message());
    Finish(*run, lock);
    return;
  }
  for (const auto& b : step.outputs) {
    Tensor* out = response->FindOutput(b.model_tensor);
    if (out == nullptr) {
      run->error =
          Internal("in ensemble '" + model_->name() + "', step " + std::to_string(s) + " (model '" +
                   step.model_name + "') did not return output '" + b.model_tensor + "'");
      Finish(*run, lock);
      return;
    }
    Tensor& t = run->tensors[b.tensor];
    t = std::move(*out);
    t.name = plan_.tensor_names[b.tensor];
    for (int c : plan_.consumers[b.tensor]) {
      if (--run->waiting[c] == 0) ready.push_back(c);
    }
  }
  response.reset();
  if (--run->steps_left == 0) {
    Finish(*run, lock);
    return;
  }
  lock.unlock();
  Start(run, ready);
}

void EnsembleScheduler::Finish(Run& run, std::unique_lock<std::mutex>& lock) {
  run.finished = true;
  InferenceRequest& req = *run.request;
  auto resp = std::make_unique<InferenceResponse>();
  resp->model_name = model_->name();
  resp->model_version = model_->version();
  resp->id = req.id;
  resp->status = run.error;
  if (resp->status.ok()) {
    resp->outputs.reserve(plan_.output_tensors.size());
    for (int t : plan_.output_tensors) resp->outputs.push_back(run.tensors[t]);
  }
  run.tensors.clear();
  const FailureReason reason = FinishResponse(*model_, req, *resp);
  const uint64_t end = NowNs();
  const uint64_t start = req.arrival_ns ? req.arrival_ns : req.enqueue_ns;
  auto& stats = model_->stats();
  if (resp->status.ok()) {
    RequestTimes t;
    t.total_ns = end - start;
    stats.RecordSuccess(t, std::max<int64_t>(1, req.batch_size));
    stats.execution_count.fetch_add(1, std::memory_order_relaxed);
    stats.last_inference_ms.store(WallClockMs(), std::memory_order_relaxed);
  } else {
    stats.RecordFailure(reason, end - start);
  }
  ResponseCallback cb = std::move(req.on_complete);
  run.request.reset();
  lock.unlock();
  cb(std::move(resp));
}

void EnsembleScheduler::RunEnded() {
  // Notified under the lock: Drain() may destroy this object as soon as it wakes.
  std::lock_guard<std::mutex> lock(mu_);
  if (--active_ == 0) idle_.notify_all();
}

void EnsembleScheduler::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  idle_.wait(lock, [this] { return active_ == 0; });
}

size_t EnsembleScheduler::QueueSize() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

}  // namespace flowserve
