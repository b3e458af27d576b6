#include "core/scheduler.h"

#include <algorithm>
#include <limits>
#include <set>

#include "backends/backend.h"
#include "common/adaptive_spin.h"
#include "common/client_activity.h"
#include "common/logging.h"
#include "common/readiness_watch.h"
#include "common/wake_batch.h"
#include "core/model_version.h"
#include "core/request_trace.h"
#include "core/response_finisher.h"
#include "core/response_sender.h"
#include "core/statistics.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
// How long an instance thread polls for the next request after executing, before it
// sleeps on the queue's condition variable (see AdaptiveSpin).
constexpr std::chrono::microseconds kSpinAfterBatch{100};
// Executions a model must have run on its instance threads before its estimate may let
// it run inline: a model's first requests tell nothing about the next ones (a 10 ms
// model must not get one request onto an I/O thread just because it is new).
constexpr uint32_t kInlineMinExecutions = 8;

// Two requests can share a batch when every input has the same non-batch dims.
bool SameItemShapes(const InferenceRequest& a, const InferenceRequest& b) {
  if (a.inputs.size() != b.inputs.size()) return false;
  for (const auto& ta : a.inputs) {
    const Tensor* tb = b.FindInput(ta.name);
    if (!tb || tb->shape.size() != ta.shape.size()) return false;
    if (!ta.shape.empty() &&
        !std::equal(ta.shape.begin() + 1, ta.shape.end(), tb->shape.begin() + 1)) {
      return false;
    }
  }
  return true;
}

uint64_t ArrivalNs(const InferenceRequest& r) { return r.arrival_ns ? r.arrival_ns : r.enqueue_ns; }

// Every live scheduler of the process, so that the server's exit can answer what is
// still queued without a path through the model table (which may be reloading).
struct SchedulerRegistry {
  std::mutex mu;
  std::set<Scheduler*> live;
  std::atomic<bool> exiting{false};
};

SchedulerRegistry& Registry() {
  static auto* registry = new SchedulerRegistry;  // never destroyed: threads may outlive main
  return *registry;
}

constexpr const char* kExiting =
    "Server is exiting: the request was still queued at the exit timeout";

}  // namespace

BatchingPolicy BatchingPolicyFromConfig(const ModelVersion& model) {
  const auto& cfg = model.config();
  BatchingPolicy p;
  p.max_batch_size = cfg.max_batch_size();
  auto to_policy = [](const inference::ModelQueuePolicy& q) {
    BatchingPolicy::QueuePolicy out;
    out.reject_on_timeout = q.timeout_action() == inference::ModelQueuePolicy::REJECT;
    out.default_timeout_us = q.default_timeout_microseconds();
    out.allow_timeout_override = q.allow_timeout_override();
    out.max_queue_size = q.max_queue_size();
    return out;
  };
  if (!cfg.has_dynamic_batching()) {
    p.queue_policy[0] = {};
    return p;
  }
  // Queue policies, priorities and ordering apply even to a model that cannot batch;
  // merging needs max_batch_size > 0.
  const auto& db = cfg.dynamic_batching();
  p.enabled = cfg.max_batch_size() > 0;
  for (int s : db.preferred_batch_size()) {
    if (s > 0 && s <= p.max_batch_size) p.preferred.push_back(s);
  }
  std::sort(p.preferred.begin(), p.preferred.end());
  p.preferred.erase(std::unique(p.preferred.begin(), p.preferred.end()), p.preferred.end());
  p.max_queue_delay_ns = db.max_queue_delay_microseconds() * 1000;
  p.preserve_ordering = db.preserve_ordering();
  p.priority_levels = db.priority_levels();
  auto def = to_policy(db.default_queue_policy());
  if (p.priority_levels == 0) {
    p.queue_policy[0] = def;
  } else {
    p.default_priority = db.default_priority_level();
    if (p.default_priority == 0 || p.default_priority > p.priority_levels) {
      p.default_priority = p.priority_levels;
    }
    for (uint64_t lvl = 1; lvl <= p.priority_levels; ++lvl) {
      auto it = db.priority_queue_policy().find(lvl);
      p.queue_policy[lvl] = it == db.priority_queue_policy().end() ? def : to_policy(it->second);
    }
  }
  return p;
}

Scheduler::Scheduler(ModelVersion* model, BatchingPolicy policy,
                     std::vector<std::unique_ptr<BackendInstance>> instances)
    : model_(model), policy_(std::move(policy)), instances_(std::move(instances)) {
  for (const auto& [level, qp] : policy_.queue_policy) levels_[level].policy = qp;
  busy_ = std::make_unique<std::atomic<bool>[]>(instances_.size());
  // A batching delay means waiting for company, which inline execution would skip;
  // decoupled responses come from any thread whenever the backend likes.
  inline_allowed_ = !model_->decoupled() && !(policy_.enabled && policy_.max_queue_delay_ns > 0);
  inline_lone_only_ = std::any_of(
      instances_.begin(), instances_.end(),
      [](const std::unique_ptr<BackendInstance>& i) { return i->WaitsOnAnotherProcess(); });
  inline_shared_ =
      !instances_.empty() &&
      std::all_of(instances_.begin(), instances_.end(),
                  [](const std::unique_ptr<BackendInstance>& i) { return i->ConcurrentExecute(); });
  loop_async_ = !instances_.empty() && !model_->decoupled() &&
                std::all_of(instances_.begin(), instances_.end(),
                            [](const std::unique_ptr<BackendInstance>& i) {
                              return i->StartsWithoutWaiting();
                            });
  on_loop_.assign(instances_.size(), 0);
  async_on_loop_.assign(instances_.size(), 0);
  for (const auto& i : instances_)
    pipeline_depth_.push_back(static_cast<int>(std::max<size_t>(1, i->PipelineDepth())));
  workers_.reserve(instances_.size());
  for (size_t i = 0; i < instances_.size(); ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
  std::lock_guard<std::mutex> lock(Registry().mu);
  Registry().live.insert(this);
}

Scheduler::~Scheduler() {
  {
    // A turn batch that is running finishes first; one still to come finds no owner.
    std::unique_lock<std::shared_mutex> lock(turn_->mu);
    turn_->owner = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(Registry().mu);
    Registry().live.erase(this);
  }
  Drain();
}

Scheduler::Batch Scheduler::TakeAll() {
  Batch all;
  std::lock_guard<std::mutex> lock(mu_);
  if (queued_ == 0) return all;
  TakeFront(queued_, all);
  for (auto& r : all) {
    model_->stats().RecordFailure(FailureReason::kRejected, NowNs() - ArrivalNs(*r));
  }
  return all;
}

size_t Scheduler::CancelAllQueued() {
  SchedulerRegistry& reg = Registry();
  reg.exiting = true;
  // Responses are built under the registry lock (the schedulers are alive), callbacks
  // run after it: dropping a request may drop the last reference to its model version,
  // whose destructor unregisters its scheduler.
  std::vector<std::pair<std::unique_ptr<InferenceRequest>, std::unique_ptr<InferenceResponse>>>
      answers;
  {
    std::lock_guard<std::mutex> lock(reg.mu);
    for (Scheduler* s : reg.live) {
      for (auto& r : s->TakeAll()) {
        auto resp = std::make_unique<InferenceResponse>();
        resp->model_name = s->model_->name();
        resp->model_version = s->model_->version();
        resp->id = r->id;
        resp->status = Unavailable(kExiting);
        answers.emplace_back(std::move(r), std::move(resp));
      }
    }
  }
  for (auto& [request, resp] : answers) {
    auto cb = std::move(request->on_complete);
    request.reset();
    cb(std::move(resp));
  }
  return answers.size();
}

Status Scheduler::Enqueue(std::unique_ptr<InferenceRequest>& request) {
  // As Triton: a priority of 0 or beyond the configured levels means the default.
  uint64_t level = 0;
  if (policy_.priority_levels > 0) {
    level = request->priority == 0 || request->priority > policy_.priority_levels
                ? policy_.default_priority
                : request->priority;
  }
  Level& lvl = levels_.at(level);  // the map's shape never changes after construction
  const auto& qp = lvl.policy;
  // A request may shorten the queue's timeout, never lengthen it (no default timeout
  // counts as an infinitely long one).
  uint64_t timeout_us = qp.default_timeout_us;
  if (qp.allow_timeout_override && request->timeout_us > 0 &&
      (timeout_us == 0 || request->timeout_us < timeout_us)) {
    timeout_us = request->timeout_us;
  }
  request->enqueue_ns = NowNs();
  if (request->trace) {
    TraceQueued(*request->trace, model_->version(), request->enqueue_ns, request->inputs);
  }
  const uint64_t deadline = timeout_us > 0 ? request->enqueue_ns + timeout_us * 1000 : 0;
  const bool cheap_inline = request->may_run_inline && inline_allowed_ && MeasuredCheap();
  const bool try_inline = cheap_inline && (!inline_lone_only_ || LoneClient());
  // A model in another process with several clients: the requests an I/O thread parses
  // in one turn of its loop wait in the queue and run there as one batch when the turn
  // ends (RunTurnBatch). That saves the two hand-offs through the instance thread, which
  // cost a batch more than the process's own round trip (bench/wake_latency.py).
  // The thread does not wait for a batch whose instance starts it without waiting (it
  // waits only while the process restarts), so the model need not be cheap then.
  const bool turn_batch = !try_inline && request->may_run_inline && inline_allowed_ &&
                          (MeasuredCheap() || loop_async_) && inline_lone_only_ &&
                          policy_.enabled && WakeBatch::InScope();
  int inline_index = -1;
  bool inline_shared = false;
  uint64_t inline_seq = 0;
  bool may_wait = try_inline;  // once, for an instance busy with a cheap execution
  for (;;) {
    bool wait = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (draining_) {
        return Unavailable("model '" + model_->name() + "' version " +
                           std::to_string(model_->version()) + " is unloading");
      }
      // Checked under mu_: CancelAllQueued empties this queue under it after setting the flag.
      if (Registry().exiting.load()) return Unavailable(kExiting);
      if (try_inline && (inline_index = ClaimForInline(&inline_shared)) >= 0) {
        inline_seq = next_seq_++;
      } else if (may_wait && queued_ == 0) {
        wait = true;  // every instance is busy, nothing waits ahead of us
      } else {
        const bool full =
            qp.max_queue_size > 0 && lvl.queue.size() + lvl.delayed.size() >= qp.max_queue_size;
        if (!full) {
          lvl.queue.push_back(Pending{std::move(request), deadline});
          ++queued_;
          if (turn_batch) turn_pending_.fetch_add(1, std::memory_order_relaxed);
          if (deadline) ++with_deadline_;
          model_->stats().pending_requests.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
    if (!wait) break;
    may_wait = false;
    WaitForIdleInstance();
  }
  if (inline_index >= 0) {
    ExecuteInline(static_cast<size_t>(inline_index), std::move(request), inline_seq, inline_shared);
    return Status::Ok();
  }
  if (request) {  // the queue was full
    std::string where =
        policy_.priority_levels > 0 ? " at priority level " + std::to_string(level) : std::string();
    Reject(std::move(request),
           Unavailable("Exceeds maximum queue size: model '" + model_->name() + "' version " +
                       std::to_string(model_->version()) + " queues at most " +
                       std::to_string(qp.max_queue_size) + " requests" + where));
    return Status::Ok();
  }
  if (turn_batch) {
    WakeBatch::AtEnd(turn_.get(), [turn = turn_] {
      std::shared_lock<std::shared_mutex> lock(turn->mu);
      if (turn->owner != nullptr) turn->owner->RunTurnBatch();
    });
    return Status::Ok();
  }
  // From an I/O thread, requests parsed in the same turn share one wake-up.
  WakeBatch::NotifyOne(cv_);
  return Status::Ok();
}

void Scheduler::RunTurnBatch() {
  Batch batch, expired;
  size_t index = instances_.size();
  uint64_t seq = 0;
  bool wake_workers = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    turn_pending_.store(0, std::memory_order_relaxed);  // ours or not, taken now or by a worker
    if (queued_ == 0) return;
    for (size_t i = 0; i < instances_.size() && !draining_; ++i) {
      if (!busy_[i].load(std::memory_order_acquire)) {
        index = i;
        break;
      }
    }
    // None idle: one running only batches started without waiting may take another
    // behind them, up to its depth (its process then goes from one to the next).
    for (size_t i = 0; index == instances_.size() && i < instances_.size() && !draining_; ++i) {
      if (async_on_loop_[i] > 0 && async_on_loop_[i] == on_loop_[i] &&
          on_loop_[i] < pipeline_depth_[i]) {
        index = i;
      }
    }
    const uint64_t now = NowNs();
    ExpireTimedOut(now, expired);
    uint64_t wake = kNever;
    const size_t take = index < instances_.size() && queued_ > 0 ? BatchSizeNow(now, &wake) : 0;
    if (take > 0) {
      TakeFront(take, batch);
      busy_[index].store(true, std::memory_order_relaxed);
      ++inline_running_;
      ++loop_running_;
      ++on_loop_[index];
      if (StartsOnLoop()) ++async_on_loop_[index];
      seq = next_seq_++;
    } else if (loop_running_ > 0 && !draining_) {
      wake_workers = false;  // a batch RunOnLoop runs takes what is queued at its end
    }
  }
  RejectExpired(expired);
  if (!batch.empty()) return RunOnLoop(index, std::move(batch), seq);
  // Every instance busy (or requests came from elsewhere meanwhile): the instance
  // threads take the rest, as they take any queued request.
  if (wake_workers) cv_->notify_all();
}

bool Scheduler::StartsOnLoop() const { return loop_async_ && ThreadReadinessWatch() != nullptr; }

void Scheduler::RunOnLoop(size_t index, Batch batch, uint64_t seq) {
  BackendInstance* instance = instances_[index].get();
  std::unique_ptr<Running> run = StartRunning(index, batch, NowNs(), seq);
  run->infer_start = NowNs();
  Running* raw = run.get();
  if (StartsOnLoop()) {
    // Counted in async_on_loop_ when it was taken: its end may come on another loop's
    // thread before StartExecute returns.
    raw->started_async = true;
    if (instance->StartExecute(raw->reqs, raw->resps,
                               [this, raw] { EndOnLoop(std::unique_ptr<Running>(raw)); })) {
      (void)run.release();  // the backend's `done` owns it now
      return;
    }
    raw->started_async = false;
    std::lock_guard<std::mutex> lock(mu_);
    --async_on_loop_[index];
  }
  if (model_->decoupled()) {
    // (Not a turn batch's model; kept whole for safety.)
    ExecuteDecoupled(instance, run->batch, run->reqs, run->owned, run->batch_size, run->dequeue_ns);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--on_loop_[index] == 0) busy_[index].store(false, std::memory_order_release);
    }
    LeaveInline(/*from_loop=*/true);
    return;
  }
  instance->Execute(run->reqs, run->resps);
  EndOnLoop(std::move(run));
}

void Scheduler::EndOnLoop(std::unique_ptr<Running> run) {
  const size_t index = run->index;
  std::vector<Delivery> deliveries = FinishRunning(*run, NowNs());
  Batch next, expired;
  uint64_t next_seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --on_loop_[index];
    if (run->started_async) --async_on_loop_[index];
    // Still on a loop's thread (not a loop's end): what queued meanwhile goes to the
    // process before this batch's answers are written, so that it is not left idle.
    // (An instance busy with a thread's Execute has no batch on a loop: none here.)
    if (ThreadReadinessWatch() != nullptr && !draining_ && queued_ > 0) {
      const uint64_t now = NowNs();
      ExpireTimedOut(now, expired);
      uint64_t wake = kNever;
      const size_t take = queued_ > 0 ? BatchSizeNow(now, &wake) : 0;
      if (take > 0) {
        TakeFront(take, next);
        ++inline_running_;  // the instance stays busy, for the next batch
        ++loop_running_;
        ++on_loop_[index];
        if (StartsOnLoop()) ++async_on_loop_[index];
        next_seq = next_seq_++;
      }
    }
    if (on_loop_[index] == 0) busy_[index].store(false, std::memory_order_release);
  }
  RejectExpired(expired);
  if (!next.empty()) RunOnLoop(index, std::move(next), next_seq);
  Deliver(run->seq, std::move(deliveries));
  run.reset();
  LeaveInline(/*from_loop=*/true);
}

size_t Scheduler::QueueSize() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

void Scheduler::Drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ && workers_.empty()) return;
    draining_ = true;
  }
  cv_->notify_all();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  workers_.clear();
  // Requests executing on callers' threads hold instances too.
  std::unique_lock<std::mutex> lock(mu_);
  cv_->wait(lock, [this] { return inline_running_ == 0; });
}

bool Scheduler::MeasuredCheap() const {
  return executions_seen_.load(std::memory_order_relaxed) >= kInlineMinExecutions &&
         execute_ewma_ns_.load(std::memory_order_relaxed) <= kInlineMaxExecuteNs;
}

void Scheduler::ObserveExecution(uint64_t ns) {
  // Weight 1/8: one slow execution (a large input) lifts a cheap model's estimate over
  // the threshold at once; about 15 cheap ones bring it back.
  const uint64_t old = execute_ewma_ns_.load(std::memory_order_relaxed);
  const uint32_t seen = executions_seen_.load(std::memory_order_relaxed);
  const uint64_t next = seen == 0 ? ns : old - old / 8 + ns / 8;
  execute_ewma_ns_.store(next, std::memory_order_relaxed);
  if (seen < kInlineMinExecutions) executions_seen_.store(seen + 1, std::memory_order_relaxed);
}

namespace {
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

void Scheduler::WaitForIdleInstance() const {
  // Two I/O threads often reach a cheap model's one instance within its execution of a
  // microsecond or two. Queueing then would wake the instance thread (and make every
  // request behind it queue too, until that thread has caught up): far more than the
  // wait. The wait is bounded by the model's own execution time, so it stays short.
  const uint64_t budget =
      std::min<uint64_t>(2 * execute_ewma_ns_.load(std::memory_order_relaxed) + 5'000, 50'000);
  const uint64_t until = NowNs() + budget;
  for (;;) {
    for (size_t i = 0; i < instances_.size(); ++i) {
      if (!busy_[i].load(std::memory_order_acquire)) return;
    }
    if (NowNs() >= until) return;
    // No sched_yield: on a loaded machine it can hand the core away for a whole time
    // slice (milliseconds) to an unrelated thread, while the wait is microseconds.
    for (int i = 0; i < 16; ++i) CpuRelax();
  }
}

int Scheduler::ClaimForInline(bool* shared) {
  *shared = false;
  // Never ahead of a queued request (priorities, timeouts and order are the queue's).
  if (queued_ > 0) return -1;
  for (size_t i = 0; i < instances_.size(); ++i) {
    if (!busy_[i].load(std::memory_order_acquire)) {
      busy_[i].store(true, std::memory_order_relaxed);
      ++inline_running_;
      return static_cast<int>(i);
    }
  }
  if (!inline_shared_) return -1;
  // All busy, but they may execute concurrently: waiting for one would only matter if its
  // holder were descheduled, and then (on a small machine, with I/O threads, the client and
  // instance threads competing for cores) the wait, or the hand-off to an instance thread
  // that must be woken, costs milliseconds. Nothing is queued, so no order is broken.
  *shared = true;
  ++inline_running_;
  return 0;
}

void Scheduler::ExecuteInline(size_t index, std::unique_ptr<InferenceRequest> request, uint64_t seq,
                              bool shared) {
  Batch batch;
  batch.push_back(std::move(request));
  Execute(index, batch, NowNs(), seq, shared);
  LeaveInline(/*from_loop=*/false);
}

void Scheduler::LeaveInline(bool from_loop) {
  std::shared_ptr<std::condition_variable> cv;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --inline_running_;
    if (from_loop) --loop_running_;
    // Drain waits for the last one, and a request queued meanwhile needs an instance
    // thread unless a batch run from a loop takes it at its end (or the turn that queued
    // it does). The scheduler may be gone once mu_ is free: the notify uses a copy.
    if (!draining_ && (queued_ == 0 || loop_running_ > 0 || turn_pending_ > 0)) return;
    cv = cv_;
  }
  cv->notify_all();
}

uint64_t Scheduler::ExpireTimedOut(uint64_t now, Batch& expired) {
  uint64_t next = kNever;
  if (with_deadline_ == 0) return next;
  for (auto& [_, lvl] : levels_) {
    for (auto it = lvl.queue.begin(); it != lvl.queue.end();) {
      if (it->deadline_ns == 0) {
        ++it;
      } else if (it->deadline_ns > now) {
        next = std::min(next, it->deadline_ns);
        ++it;
      } else if (lvl.policy.reject_on_timeout) {
        expired.push_back(std::move(it->request));
        it = lvl.queue.erase(it);
        --queued_;
        --with_deadline_;
      } else {
        // DELAY: still served, but after every request that has not timed out.
        lvl.delayed.push_back(Pending{std::move(it->request), 0});
        it = lvl.queue.erase(it);
        --with_deadline_;
      }
    }
  }
  if (!expired.empty()) {
    model_->stats().pending_requests.fetch_sub(static_cast<int64_t>(expired.size()),
                                               std::memory_order_relaxed);
  }
  return next;
}

void Scheduler::TakeFront(size_t n, Batch& batch) {
  for (auto& [_, lvl] : levels_) {
    for (auto* q : {&lvl.queue, &lvl.delayed}) {
      while (n > 0 && !q->empty()) {
        if (q->front().deadline_ns) --with_deadline_;
        batch.push_back(std::move(q->front().request));
        q->pop_front();
        --queued_;
        --n;
      }
    }
  }
  model_->stats().pending_requests.fetch_sub(static_cast<int64_t>(batch.size()),
                                             std::memory_order_relaxed);
}

size_t Scheduler::BatchSizeNow(uint64_t now, uint64_t* wake) const {
  size_t take = 0;
  if (!policy_.enabled) {
    take = 1;
  } else {
    // Walk the queue in serving order (highest priority level first, timed-out
    // DELAY requests last within a level) as far as one batch can reach. This is
    // Triton's rule set: the largest preferred size that can be formed goes at
    // once; a batch that cannot grow to a preferred size without overshooting the
    // largest one goes too; otherwise wait, up to the oldest request's
    // max_queue_delay, for the batch to fill. Without a delay, whatever is queued
    // goes as soon as an instance is free.
    const int64_t max_preferred =
        policy_.preferred.empty() ? policy_.max_batch_size : policy_.preferred.back();
    const InferenceRequest* first = nullptr;
    size_t n = 0, best = 0;
    int64_t size = 0;
    uint64_t oldest = kNever;
    bool send_now = false;
    for (auto& [_, lvl] : levels_) {
      for (auto* q : {&lvl.queue, &lvl.delayed}) {
        for (const auto& p : *q) {
          const InferenceRequest& r = *p.request;
          const int64_t bs = std::max<int64_t>(1, r.batch_size);
          if (n > 0) {
            if (size + bs > max_preferred && best == 0) best = n;
            if (size + bs > policy_.max_batch_size || !SameItemShapes(*first, r)) {
              send_now = true;
              break;
            }
          } else {
            first = &r;
          }
          size += bs;
          ++n;
          oldest = std::min(oldest, r.enqueue_ns);
          if (std::binary_search(policy_.preferred.begin(), policy_.preferred.end(), size)) {
            best = n;
          }
        }
        if (send_now) break;
      }
      if (send_now) break;
    }
    const uint64_t delay = policy_.max_queue_delay_ns;
    const bool delay_exceeded = delay != 0 && now >= oldest + delay;
    if (best > 0 && !delay_exceeded) {
      take = best;
    } else if (send_now || size >= max_preferred || delay == 0 || delay_exceeded || draining_) {
      take = n;
    } else {
      *wake = std::min(*wake, oldest + delay);
    }
  }

  return take;
}

bool Scheduler::NextBatch(std::unique_lock<std::mutex>& lock, size_t index, Batch& batch,
                          Batch& expired, uint64_t& seq, AdaptiveSpin* spin) {
  for (;;) {
    const uint64_t now = NowNs();
    const uint64_t next_deadline = ExpireTimedOut(now, expired);
    if (!expired.empty()) return true;  // answer them first, then come back
    if (busy_[index].load(std::memory_order_acquire)) {
      // A caller's thread is executing on this instance; its release wakes us.
      if (draining_ && queued_ == 0) return false;
      cv_->wait(lock);
      continue;
    }
    // Requests waiting for the end of an I/O thread's turn are that thread's to run.
    if (queued_ == 0 || (!draining_ && queued_ <= turn_pending_)) {
      if (draining_) return false;
      if (spin) {
        lock.unlock();
        spin->Spin([this] {
          return queued_.load(std::memory_order_relaxed) >
                     turn_pending_.load(std::memory_order_relaxed) ||
                 draining_.load(std::memory_order_relaxed);
        });
        spin = nullptr;  // once per executed batch, then sleep
        lock.lock();
        // Re-check under the lock whatever the spin saw: a request queued (and its
        // notify sent) between the spin's last look and lock() must not be missed.
        continue;
      }
      cv_->wait(lock);
      continue;
    }

    uint64_t wake = next_deadline;
    const size_t take = BatchSizeNow(now, &wake);
    if (take == 0) {
      // Nothing to send yet: sleep until the batch delay or a queue timeout runs out,
      // or a new request arrives. Never a busy wait.
      if (wake == kNever) {
        cv_->wait(lock);
      } else if (wake > now) {
        cv_->wait_for(lock, std::chrono::nanoseconds(wake - now));
      }
      continue;
    }
    TakeFront(take, batch);
    busy_[index].store(true, std::memory_order_relaxed);
    seq = next_seq_++;
    // Another idle instance may be able to start on what is left.
    if (queued_ > 0) cv_->notify_one();
    return true;
  }
}

void Scheduler::WorkerLoop(size_t index) {
  Batch batch, expired;
  AdaptiveSpin spin(kSpinAfterBatch);
  bool hot = false;  // just executed: a request may be on its way
  for (;;) {
    uint64_t seq = 0;
    uint64_t dequeue_ns = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!NextBatch(lock, index, batch, expired, seq, hot ? &spin : nullptr)) return;
      dequeue_ns = NowNs();
    }
    RejectExpired(expired);
    if (!batch.empty()) {
      Execute(index, batch, dequeue_ns, seq);
      batch.clear();
      hot = true;
    }
  }
}

void Scheduler::RejectExpired(Batch& expired) {
  for (auto& r : expired) {
    const uint64_t waited_us = (NowNs() - r->enqueue_ns) / 1000;
    Reject(std::move(r), Unavailable("Request timeout expired: request waited " +
                                     std::to_string(waited_us) + " us in the queue of model '" +
                                     model_->name() + "' without being scheduled"));
  }
  expired.clear();
}

void Scheduler::Reject(std::unique_ptr<InferenceRequest> request, const Status& status) {
  auto resp = std::make_unique<InferenceResponse>();
  resp->model_name = model_->name();
  resp->model_version = model_->version();
  resp->id = request->id;
  resp->status = status;
  model_->stats().RecordFailure(FailureReason::kRejected, NowNs() - ArrivalNs(*request));
  auto cb = std::move(request->on_complete);
  request.reset();
  cb(std::move(resp));
}

std::unique_ptr<Scheduler::Running> Scheduler::StartRunning(size_t index, Batch& batch,
                                                            uint64_t dequeue_ns, uint64_t seq) {
  auto run = std::make_unique<Running>();
  run->index = index;
  run->seq = seq;
  run->dequeue_ns = dequeue_ns;
  run->batch = std::move(batch);
  const size_t n = run->batch.size();
  run->reqs.reserve(n);
  run->owned.reserve(n);
  run->resps.reserve(n);
  for (auto& r : run->batch) {
    run->reqs.push_back(r.get());
    auto resp = std::make_unique<InferenceResponse>();
    resp->model_name = model_->name();
    resp->model_version = model_->version();
    resp->id = r->id;
    run->resps.push_back(resp.get());
    run->owned.push_back(std::move(resp));
    run->batch_size += std::max<int64_t>(1, r->batch_size);
  }
  return run;
}

void Scheduler::Execute(size_t index, Batch& batch, uint64_t dequeue_ns, uint64_t seq,
                        bool shared) {
  BackendInstance* instance = instances_[index].get();
  std::unique_ptr<Running> run = StartRunning(index, batch, dequeue_ns, seq);
  if (model_->decoupled()) {
    ExecuteDecoupled(instance, run->batch, run->reqs, run->owned, run->batch_size, dequeue_ns);
    busy_[index].store(false, std::memory_order_release);
    return;
  }
  run->infer_start = NowNs();
  instance->Execute(run->reqs, run->resps);
  std::vector<Delivery> deliveries = FinishRunning(*run, NowNs());
  // Free before the callbacks run: a caller answered by them may send its next request at
  // once, and should find the instance idle.
  if (!shared) busy_[index].store(false, std::memory_order_release);
  Deliver(seq, std::move(deliveries));
}

std::vector<Scheduler::Delivery> Scheduler::FinishRunning(Running& run, uint64_t infer_end) {
  Batch& batch = run.batch;
  const size_t n = batch.size();
  std::vector<FailureReason> reasons(n);
  for (size_t i = 0; i < n; ++i) reasons[i] = FinishResponse(*model_, *batch[i], *run.owned[i]);
  const uint64_t end = NowNs();
  // A batch started without waiting kept no thread waiting: its time says nothing of what
  // running the model on a caller's thread would cost (and includes the loop's own work).
  if (!run.started_async) ObserveExecution(end - run.dequeue_ns);

  // Triton's split: input = core work before the backend runs, infer = the backend's
  // Execute, output = output selection and classification. Each request is charged
  // its whole batch's time, as Triton does.
  auto& stats = model_->stats();
  stats.execution_count.fetch_add(1, std::memory_order_relaxed);
  stats.last_inference_ms.store(WallClockMs(), std::memory_order_relaxed);
  RequestTimes t;
  t.compute_input_ns = run.infer_start - run.dequeue_ns;
  t.compute_infer_ns = infer_end - run.infer_start;
  t.compute_output_ns = end - infer_end;
  stats.RecordBatch(run.batch_size, t.compute_input_ns, t.compute_infer_ns, t.compute_output_ns);

  std::vector<Delivery> deliveries;
  deliveries.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    InferenceRequest& r = *batch[i];
    if (r.trace)
      TraceExecuted(*r.trace, run.dequeue_ns, run.infer_start, infer_end, end, *run.owned[i]);
    t.total_ns = end - ArrivalNs(r);
    t.queue_ns = run.dequeue_ns - r.enqueue_ns;
    if (run.owned[i]->status.ok()) {
      stats.RecordSuccess(t, std::max<int64_t>(1, r.batch_size));
    } else {
      stats.RecordFailure(reasons[i], t.total_ns);
    }
    deliveries.push_back(Delivery{std::move(r.on_complete), std::move(run.owned[i])});
    batch[i].reset();  // release input buffers before the frontend writes
  }
  return deliveries;
}

void Scheduler::ExecuteDecoupled(BackendInstance* instance, Batch& batch,
                                 std::vector<InferenceRequest*>& reqs,
                                 std::vector<std::unique_ptr<InferenceResponse>>& owned,
                                 int64_t batch_size, uint64_t dequeue_ns) {
  // The backend answers through each request's sender, now or later from any thread.
  // A response it fails in `owned` ends the request with that error; one it fills while
  // leaving the sender alone (a backend that knows nothing of decoupling) is the only
  // and final response. Responses are not ordered across requests (preserve_ordering
  // does not apply), as in Triton.
  std::vector<InferenceResponse*> resps;
  for (auto& r : owned) resps.push_back(r.get());
  std::vector<std::shared_ptr<ResponseSender>> senders;
  senders.reserve(batch.size());
  for (auto& r : batch) {
    r->response_sender = MakeResponseSender(model_, *r, dequeue_ns);
    senders.push_back(r->response_sender);
  }
  const uint64_t infer_start = NowNs();
  instance->Execute(reqs, resps);
  const uint64_t infer_end = NowNs();
  auto& stats = model_->stats();
  stats.execution_count.fetch_add(1, std::memory_order_relaxed);
  stats.last_inference_ms.store(WallClockMs(), std::memory_order_relaxed);
  stats.RecordBatch(batch_size, infer_start - dequeue_ns, infer_end - infer_start, 0);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i].reset();  // inputs go now; the backend keeps the sender if it needs it
    if (senders[i]->closed()) continue;
    const bool kept = senders[i].use_count() > 1;
    if (!owned[i]->status.ok() || !kept) (void)senders[i]->Send(std::move(owned[i]), true);
  }
}

void Scheduler::Deliver(uint64_t seq, std::vector<Delivery> deliveries) {
  if (!policy_.preserve_ordering) {
    for (auto& d : deliveries) d.callback(std::move(d.response));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(order_mu_);
    finished_.emplace(seq, std::move(deliveries));
    if (delivering_) return;  // the thread delivering now will reach this batch
    delivering_ = true;
  }
  // One thread at a time hands out every batch whose predecessors are all out, so
  // callbacks run in queue order even when a later batch finished first.
  for (;;) {
    std::vector<Delivery> ready;
    {
      std::lock_guard<std::mutex> lock(order_mu_);
      auto it = finished_.find(next_to_deliver_);
      if (it == finished_.end()) {
        delivering_ = false;
        return;
      }
      ready = std::move(it->second);
      finished_.erase(it);
      ++next_to_deliver_;
    }
    for (auto& d : ready) d.callback(std::move(d.response));
  }
}

}  // namespace flowserve
