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
  std::mutex mu;  // guards the run and its branches
  // Branches still going plus decoupled steps still answering: the request ends (its
  // final response) when this drops to zero.
  size_t open = 1;
  bool finished = false;
  Status error;

  ~Run() { owner->RunEnded(); }
};

// One way through the graph: the tensors produced so far and what each step still
// waits for. A request starts with one; each response of a decoupled step starts a copy
// of the branch the step ran in.
struct EnsembleScheduler::Branch {
  std::vector<Tensor> tensors;  // by plan tensor index
  std::vector<int> waiting;     // per step: input tensors not yet available
  size_t steps_left = 0;
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
  auto branch = std::make_shared<Branch>();
  branch->tensors.resize(plan_.tensor_names.size());
  branch->steps_left = plan_.steps.size();
  branch->waiting.resize(plan_.steps.size());
  for (size_t i = 0; i < plan_.steps.size(); ++i) {
    branch->waiting[i] = static_cast<int>(plan_.steps[i].input_tensors.size());
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
      if (branch->waiting[s] == 0) ready.push_back(static_cast<int>(s));  // reads nothing
    }
    for (int t : plan_.input_tensors) {
      // An absent optional input counts as available: a step that needs it will say so.
      const Tensor* in = request->FindInput(plan_.tensor_names[t]);
      if (in != nullptr) branch->tensors[t] = *in;
      for (int s : plan_.consumers[t]) {
        if (--branch->waiting[s] == 0) ready.push_back(s);
      }
    }
    run->request = std::move(request);
  }
  Start(run, branch, ready);
  return Status::Ok();
}

void EnsembleScheduler::Start(const std::shared_ptr<Run>& run,
                              const std::shared_ptr<Branch>& branch,
                              const std::vector<int>& steps) {
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
        const Tensor& t = branch->tensors[b.tensor];
        if (t.dtype == DataType::kInvalid) continue;  // an absent optional input
        Tensor view = t;                              // shares the producer's buffer
        view.name = b.model_tensor;
        req->inputs.push_back(std::move(view));
      }
    }
    for (const auto& b : step.outputs) req->outputs.push_back(RequestedOutput{b.model_tensor, 0});
    req->arrival_ns = NowNs();
    req->multiple_responses = step.decoupled;
    req->on_complete = [this, run, branch, s](std::unique_ptr<InferenceResponse> resp) {
      OnStepDone(run, branch, s, std::move(resp));
    };
    if (parent_trace) {
      req->trace = StartChildTrace(*parent_trace, step.model_name, req->arrival_ns);
      TraceUntilComplete(*req);
    }
    dispatch_(std::move(req));
  }
}

void EnsembleScheduler::OnStepDone(const std::shared_ptr<Run>& run,
                                   const std::shared_ptr<Branch>& branch, int s,
                                   std::unique_ptr<InferenceResponse> response) {
  const auto& step = plan_.steps[s];
  std::vector<int> ready;
  std::unique_lock<std::mutex> lock(run->mu);
  if (run->finished) return;
  Status st = response->status;
  if (!st.ok()) {
    st = Status(st.code(), "in ensemble '" + model_->name() + "', step " + std::to_string(s) +
                               " (model '" + step.model_name + "'): " + st.message());
  }
  // A plain step moves its branch on; each response of a decoupled one moves a copy of
  // the branch as it was when the step started (nothing else in it ran since: see
  // ensemble_plan.h), and the step's final flag ends the original.
  std::shared_ptr<Branch> next;
  if (st.ok() && !response->flag_only) {
    next = step.decoupled ? std::make_shared<Branch>(*branch) : branch;
    if (step.decoupled) ++run->open;
    st = Absorb(*next, s, *response, ready);
  }
  if (step.decoupled && response->final) --run->open;
  response.reset();
  if (!st.ok()) {
    run->error = st;
    Respond(*run, nullptr, true, lock);
    return;
  }
  if (next && next->steps_left == 0) {
    --run->open;
    Respond(*run, next.get(), run->open == 0, lock);
    return;
  }
  if (!next) {
    if (run->open == 0) Respond(*run, nullptr, true, lock);
    return;
  }
  lock.unlock();
  Start(run, next, ready);
}

Status EnsembleScheduler::Absorb(Branch& branch, int s, InferenceResponse& response,
                                 std::vector<int>& ready) {
  const auto& step = plan_.steps[s];
  for (const auto& b : step.outputs) {
    Tensor* out = response.FindOutput(b.model_tensor);
    if (out == nullptr) {
      return Internal("in ensemble '" + model_->name() + "', step " + std::to_string(s) +
                      " (model '" + step.model_name + "') did not return output '" +
                      b.model_tensor + "'");
    }
    Tensor& t = branch.tensors[b.tensor];
    t = std::move(*out);
    t.name = plan_.tensor_names[b.tensor];
    for (int c : plan_.consumers[b.tensor]) {
      if (--branch.waiting[c] == 0) ready.push_back(c);
    }
  }
  --branch.steps_left;
  return Status::Ok();
}

void EnsembleScheduler::Respond(Run& run, const Branch* branch, bool final,
                                std::unique_lock<std::mutex>& lock) {
  InferenceRequest& req = *run.request;
  auto resp = std::make_unique<InferenceResponse>();
  resp->model_name = model_->name();
  resp->model_version = model_->version();
  resp->id = req.id;
  resp->status = run.error;
  resp->final = final;
  FailureReason reason = FailureReason::kOther;
  if (resp->status.ok() && branch == nullptr) {
    resp->flag_only = true;
  } else {
    if (resp->status.ok()) {
      resp->outputs.reserve(plan_.output_tensors.size());
      for (int t : plan_.output_tensors) resp->outputs.push_back(branch->tensors[t]);
    }
    reason = FinishResponse(*model_, req, *resp);
  }
  if (!final) {
    // Under the run's lock, so the final response cannot overtake this one.
    req.on_complete(std::move(resp));
    return;
  }
  run.finished = true;
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
