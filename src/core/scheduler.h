#pragma once
// Feeds one model version's instances from one queue. Each instance runs on its own
// thread; with dynamic batching a free instance takes as many compatible requests as
// the config allows (preferred sizes, max queue delay), otherwise one at a time.
// Requests wait in per-priority-level queues with Triton's queue policies.
// Run-to-completion: a request its frontend marks `may_run_inline` executes on the
// calling thread itself (no hand-off either way) when the model is measured cheap, an
// instance is idle, nothing is queued ahead of it and no batching delay applies.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "common/status.h"
#include "core/inference_request.h"
#include "core/inference_response.h"

namespace flowserve {

class AdaptiveSpin;
class BackendInstance;
class ModelVersion;

struct BatchingPolicy {
  bool enabled = false;  // merge requests (dynamic_batching and max_batch_size > 0)
  int64_t max_batch_size = 0;
  std::vector<int64_t> preferred;  // ascending
  uint64_t max_queue_delay_ns = 0;
  bool preserve_ordering = false;
  uint64_t priority_levels = 0;  // 0: one level
  uint64_t default_priority = 0;
  struct QueuePolicy {
    bool reject_on_timeout = true;  // timeout_action REJECT (else DELAY)
    uint64_t default_timeout_us = 0;
    bool allow_timeout_override = false;
    uint32_t max_queue_size = 0;  // 0: unbounded
  };
  std::map<uint64_t, QueuePolicy> queue_policy;  // by priority level (0 = the only one)
};

// Reads the dynamic_batching section (and max_batch_size) of a config.
BatchingPolicy BatchingPolicyFromConfig(const ModelVersion& model);

class Scheduler {
 public:
  Scheduler(ModelVersion* model, BatchingPolicy policy,
            std::vector<std::unique_ptr<BackendInstance>> instances);
  ~Scheduler();

  // Takes the request on success (a full queue is answered through the request's
  // callback, as Triton does, with Unavailable); leaves it with the caller on error.
  Status Enqueue(std::unique_ptr<InferenceRequest>& request);
  // Stops accepting and waits until every queued request has been answered.
  void Drain();
  size_t QueueSize() const;

  // Server exit: answers every request still queued in any scheduler of the process
  // with Unavailable (requests already executing finish normally), and from then on
  // refuses new ones the same way, so a request is never left to a reset connection.
  // Returns how many were answered.
  static size_t CancelAllQueued();

  // A model whose executions average more than this (EWMA) never runs on the caller's
  // thread: an I/O thread serves other connections, which must not wait behind it.
  static constexpr uint64_t kInlineMaxExecuteNs = 200'000;

 private:
  using Batch = std::vector<std::unique_ptr<InferenceRequest>>;
  struct Pending {
    std::unique_ptr<InferenceRequest> request;
    uint64_t deadline_ns;  // 0: none
  };
  struct Level {
    BatchingPolicy::QueuePolicy policy;
    std::deque<Pending> queue;
    // Timed out under timeout_action DELAY: served after everything in `queue`.
    std::deque<Pending> delayed;
  };
  struct Delivery {
    ResponseCallback callback;
    std::unique_ptr<InferenceResponse> response;
  };

  // One batch on an instance, from leaving the queue to its answers.
  struct Running {
    size_t index = 0;
    uint64_t seq = 0;
    uint64_t dequeue_ns = 0;
    uint64_t infer_start = 0;
    int64_t batch_size = 0;
    bool started_async = false;  // StartExecute took it
    Batch batch;
    std::vector<InferenceRequest*> reqs;
    std::vector<std::unique_ptr<InferenceResponse>> owned;
    std::vector<InferenceResponse*> resps;
  };

  void WorkerLoop(size_t index);
  // At the end of an I/O thread's turn: runs what is queued as one batch on this thread,
  // if an instance is idle; else leaves it to the instance threads.
  void RunTurnBatch();
  // Runs `batch` (taken with busy_[index] set and inline_running_ counted) from an event
  // loop's thread: started without waiting where the instance can (StartExecute); its end
  // (EndOnLoop) starts the next queued batch from there before answering this one.
  void RunOnLoop(size_t index, Batch batch, uint64_t seq);
  // The end of a batch RunOnLoop ran: answers it, having started what is queued (or freed
  // the instance). Returns the next batch to run when the caller should run it.
  void EndOnLoop(std::unique_ptr<Running> run);
  // Whether a batch RunOnLoop runs from this thread is offered to StartExecute.
  bool StartsOnLoop() const;
  // Ends an inline execution or a batch RunOnLoop ran (`from_loop`), waking an instance
  // thread if what is queued now needs one, or Drain.
  void LeaveInline(bool from_loop);
  std::unique_ptr<Running> StartRunning(size_t index, Batch& batch, uint64_t dequeue_ns,
                                        uint64_t seq);
  // After the backend: output selection, statistics and traces; what to deliver.
  std::vector<Delivery> FinishRunning(Running& run, uint64_t infer_end);
  // Under mu_: how many queued requests the next batch takes now; 0 when it should wait
  // for more, until *wake at the latest.
  size_t BatchSizeNow(uint64_t now, uint64_t* wake) const;
  void RejectExpired(Batch& expired);
  // Under mu_: claims an idle instance for the caller's thread; its index, or -1. With
  // instances that execute concurrently, a busy one is shared (`*shared` set): it is not
  // marked busy and stays free for its own worker.
  int ClaimForInline(bool* shared);
  // Polls, briefly (the model's measured execution time), for an instance to free up.
  void WaitForIdleInstance() const;
  void ExecuteInline(size_t index, std::unique_ptr<InferenceRequest> request, uint64_t seq,
                     bool shared);
  // Folds one execution's duration into the per-model estimate inline execution checks.
  void ObserveExecution(uint64_t ns);
  bool MeasuredCheap() const;
  // Blocks until a batch is ready or requests timed out; false when draining and
  // nothing is left. `seq` numbers batches in the order they leave the queue.
  // `spin` (the worker's own; null unless it just executed, so that a request may be
  // on its way): poll briefly before sleeping, because a futex wake-up costs more than
  // a small request.
  bool NextBatch(std::unique_lock<std::mutex>& lock, size_t index, Batch& batch, Batch& expired,
                 uint64_t& seq, AdaptiveSpin* spin);
  // Moves timed-out requests out (REJECT) or to the back (DELAY); returns the
  // earliest deadline still pending (UINT64_MAX when none).
  uint64_t ExpireTimedOut(uint64_t now, Batch& expired);
  // Removes the first n requests in serving order.
  void TakeFront(size_t n, Batch& batch);
  // Runs `batch` on instance `index` (busy_ set by the caller) and frees it; a shared
  // execution (see ClaimForInline) leaves busy_ alone.
  void Execute(size_t index, Batch& batch, uint64_t dequeue_ns, uint64_t seq, bool shared = false);
  void ExecuteDecoupled(BackendInstance* instance, Batch& batch,
                        std::vector<InferenceRequest*>& reqs,
                        std::vector<std::unique_ptr<InferenceResponse>>& owned, int64_t batch_size,
                        uint64_t dequeue_ns);
  void Reject(std::unique_ptr<InferenceRequest> request, const Status& status);
  // Empties every queue; the caller answers what it got, outside mu_.
  Batch TakeAll();
  // Hands responses to their frontends; with preserve_ordering, batch by batch in
  // `seq` order.
  void Deliver(uint64_t seq, std::vector<Delivery> deliveries);

  // What a turn-end callback (WakeBatch::AtEnd) reaches the scheduler through: it may run
  // after the scheduler is gone, and the destructor waits for one that is running.
  struct TurnToken {
    explicit TurnToken(Scheduler* s) : owner(s) {}
    std::shared_mutex mu;  // shared by running callbacks (several I/O threads may run
                           // turn batches on different instances), exclusive to clear
    Scheduler* owner;
  };
  std::shared_ptr<TurnToken> turn_ = std::make_shared<TurnToken>(this);

  ModelVersion* model_;
  BatchingPolicy policy_;
  std::vector<std::unique_ptr<BackendInstance>> instances_;
  std::vector<std::thread> workers_;

  mutable std::mutex mu_;
  // Shared: a batched wake-up (WakeBatch) may reach it after this scheduler is gone.
  std::shared_ptr<std::condition_variable> cv_ = std::make_shared<std::condition_variable>();
  std::map<uint64_t, Level> levels_;  // priority level -> queues; 1 is the highest
  std::atomic<size_t> queued_{0};     // written under mu_; read without it while spinning
  // Of those, queued to run at the end of an I/O thread's turn (RunTurnBatch): instance
  // threads leave them alone unless draining. Written under mu_.
  std::atomic<size_t> turn_pending_{0};
  size_t with_deadline_ = 0;  // queued requests that can time out
  uint64_t next_seq_ = 0;
  std::atomic<bool> draining_{false};
  // By instance index: executing (on its worker or on a caller's thread). Set under mu_;
  // freed by the executing thread without it (a worker of a claimed instance waits on
  // cv_, which the inline release notifies under mu_).
  std::unique_ptr<std::atomic<bool>[]> busy_;
  size_t inline_running_ = 0;  // under mu_; Drain waits for it to reach 0
  // Under mu_: of those, batches RunOnLoop runs, whose end looks at the queue itself
  // (RunTurnBatch then need not wake an instance thread for what it leaves queued).
  size_t loop_running_ = 0;
  // By instance, under mu_: batches RunOnLoop runs on it; of those, started without
  // waiting (counted just before StartExecute); and how many of those it takes at once
  // (BackendInstance::PipelineDepth, fixed at load).
  std::vector<int> on_loop_, async_on_loop_, pipeline_depth_;
  // Every instance starts batches without waiting (fixed at load): turn batches need no
  // cheap model.
  bool loop_async_ = false;
  // Inline execution needs no batching delay, no decoupled responses (fixed at load).
  bool inline_allowed_ = false;
  // Inline only for a lone client (BackendInstance::WaitsOnAnotherProcess).
  bool inline_lone_only_ = false;
  // Every instance may execute on several threads at once (fixed at load): inline
  // execution never waits for a busy instance.
  bool inline_shared_ = false;
  // Execution time estimate (EWMA, ns) and how many executions it has seen; read
  // without a lock (an estimate a race can only make slightly stale).
  std::atomic<uint64_t> execute_ewma_ns_{0};
  std::atomic<uint32_t> executions_seen_{0};

  std::mutex order_mu_;
  uint64_t next_to_deliver_ = 0;
  std::map<uint64_t, std::vector<Delivery>> finished_;  // waiting for earlier batches
  bool delivering_ = false;
};

}  // namespace flowserve
