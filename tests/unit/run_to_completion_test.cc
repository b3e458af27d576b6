// Run-to-completion in the scheduler: which thread executes a request a frontend lets run
// on its own thread. A real identity model behind a real scheduler; the thread that
// runs the completion callback is the thread that executed the request.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backends/backend.h"
#include "backends/identity/identity_backend.h"
#include "common/client_activity.h"
#include "common/readiness_watch.h"
#include "common/wake_batch.h"
#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/model_version.h"
#include "core/scheduler.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

struct ModelOptions {
  int execute_delay_ms = 0;
  int64_t max_queue_delay_us = -1;  // >= 0: dynamic batching with this delay
  bool decoupled = false;
};

std::shared_ptr<ModelVersion> LoadIdentity(const ModelOptions& o) {
  static const bool registered = [] {
    RegisterIdentityBackend();
    return true;
  }();
  (void)registered;
  auto cfg = std::make_shared<inference::ModelConfig>();
  cfg->set_name("m");
  cfg->set_backend("identity");
  cfg->set_max_batch_size(o.max_queue_delay_us >= 0 ? 8 : 0);
  auto* in = cfg->add_input();
  in->set_name("IN");
  in->set_data_type(inference::TYPE_FP32);
  in->add_dims(-1);
  auto* out = cfg->add_output();
  out->set_name("OUT");
  out->set_data_type(inference::TYPE_FP32);
  out->add_dims(-1);
  if (o.execute_delay_ms > 0) {
    (*cfg->mutable_parameters())["execute_delay_ms"].set_string_value(
        std::to_string(o.execute_delay_ms));
  }
  if (o.max_queue_delay_us >= 0) {
    cfg->mutable_dynamic_batching()->set_max_queue_delay_microseconds(o.max_queue_delay_us);
  }
  if (o.decoupled) cfg->mutable_model_transaction_policy()->set_decoupled(true);
  auto model = std::make_shared<ModelVersion>("m", 1, cfg, "/nonexistent");
  Status st = model->Load({}, [](std::unique_ptr<InferenceRequest>) {});
  EXPECT_TRUE(st.ok()) << st.message();
  return model;
}

struct Outcome {
  std::thread::id thread;
  Status status;
  float first = 0;
};

// Sends one request from this thread to `target` (a model or a scheduler); waits for
// its answer.
template <class Target>
Outcome Infer(Target& model, bool may_run_inline, bool batched = false) {
  auto req = std::make_unique<InferenceRequest>();
  req->model_name = "m";
  req->may_run_inline = may_run_inline;
  req->multiple_responses = true;  // accepted by a decoupled model too
  Tensor t;
  t.name = "IN";
  t.dtype = DataType::kFp32;
  t.shape = batched ? std::vector<int64_t>{1, 4} : std::vector<int64_t>{4};
  const float v[4] = {7, 8, 9, 10};
  std::memcpy(AllocateTensorData(t, sizeof v), v, sizeof v);
  req->inputs.push_back(std::move(t));
  std::promise<Outcome> done;
  req->on_complete = [&done](std::unique_ptr<InferenceResponse> resp) {
    if (!resp->final) return;
    Outcome o{std::this_thread::get_id(), resp->status};
    if (const Tensor* out = resp->FindOutput("OUT"); out && out->byte_size >= 4) {
      std::memcpy(&o.first, out->data, 4);
    }
    done.set_value(o);
  };
  auto answer = done.get_future();
  Status st = model.Enqueue(req);
  EXPECT_TRUE(st.ok()) << st.message();
  return answer.get();
}

TEST(RunToCompletion, CheapModelRunsOnTheCallersThreadOnceMeasured) {
  auto model = LoadIdentity({});
  // A new model's first executions go to its instance thread: they measure it.
  for (int i = 0; i < 8; ++i) {
    Outcome o = Infer(*model, true);
    EXPECT_NE(o.thread, std::this_thread::get_id()) << "request " << i;
  }
  for (int i = 0; i < 5; ++i) {
    Outcome o = Infer(*model, true);
    EXPECT_EQ(o.thread, std::this_thread::get_id()) << "request " << i;
    EXPECT_TRUE(o.status.ok());
    EXPECT_EQ(o.first, 7);
  }
  // Inline executions are counted like the others.
  EXPECT_EQ(model->stats().execution_count.load(), 13u);
  EXPECT_EQ(model->stats().success.count.load(), 13u);
  EXPECT_EQ(model->stats().queue.count.load(), 13u);
  EXPECT_EQ(model->stats().compute_infer.count.load(), 13u);
  model->Drain();
}

TEST(RunToCompletion, OnlyWhenTheFrontendAllowsIt) {
  auto model = LoadIdentity({});
  for (int i = 0; i < 12; ++i) EXPECT_NE(Infer(*model, false).thread, std::this_thread::get_id());
  model->Drain();
}

TEST(RunToCompletion, SlowModelNeverRunsOnTheCallersThread) {
  auto model = LoadIdentity({.execute_delay_ms = 1});  // 5x the inline threshold
  for (int i = 0; i < 12; ++i) {
    EXPECT_NE(Infer(*model, true).thread, std::this_thread::get_id()) << "request " << i;
  }
  model->Drain();
}

TEST(RunToCompletion, BatchingDelayKeepsRequestsOnTheInstanceThread) {
  auto model = LoadIdentity({.max_queue_delay_us = 100});
  for (int i = 0; i < 12; ++i) {
    EXPECT_NE(Infer(*model, true, true).thread, std::this_thread::get_id()) << "request " << i;
  }
  model->Drain();
}

TEST(RunToCompletion, BatcherWithoutDelayRunsInline) {
  auto model = LoadIdentity({.max_queue_delay_us = 0});
  for (int i = 0; i < 8; ++i) Infer(*model, true, true);
  EXPECT_EQ(Infer(*model, true, true).thread, std::this_thread::get_id());
  model->Drain();
}

TEST(RunToCompletion, DecoupledModelNeverRunsInline) {
  auto model = LoadIdentity({.decoupled = true});
  for (int i = 0; i < 12; ++i) {
    EXPECT_NE(Infer(*model, true).thread, std::this_thread::get_id()) << "request " << i;
  }
  model->Drain();
}

// An instance whose Execute would wait for another process (the Python backend's).
class OutOfProcessInstance : public BackendInstance {
 public:
  void Execute(std::span<InferenceRequest* const>, std::span<InferenceResponse* const>) override {}
  bool WaitsOnAnotherProcess() const override { return true; }
};

TEST(RunToCompletion, OutOfProcessModelRunsInlineOnlyForALoneClient) {
  auto model = LoadIdentity({.max_queue_delay_us = 0});
  std::vector<std::unique_ptr<BackendInstance>> instances;
  instances.push_back(std::make_unique<OutOfProcessInstance>());
  Scheduler scheduler(model.get(), BatchingPolicyFromConfig(*model), std::move(instances));
  for (int i = 0; i < 8; ++i) Infer(scheduler, true, true);  // measured cheap from now on
  // Two clients: the caller's thread (an I/O thread) must stay free for the other one,
  // and requests must be able to meet in a batch on the instance's thread.
  for (int i = 0; i < 6; ++i) {
    NoteRequestFrom(1 + i % 2);
    EXPECT_NE(Infer(scheduler, true, true).thread, std::this_thread::get_id()) << "request " << i;
  }
  // One client sending request after request: inline saves the wake-ups.
  NoteRequestFrom(1);
  while (!LoneClient()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(Infer(scheduler, true, true).thread, std::this_thread::get_id());
  scheduler.Drain();
  model->Drain();
}

// Records each batch it executes: its size and the thread.
class RecordingOutOfProcessInstance : public OutOfProcessInstance {
 public:
  void Execute(std::span<InferenceRequest* const> requests,
               std::span<InferenceResponse* const>) override {
    std::lock_guard<std::mutex> lock(mu);
    batches.emplace_back(requests.size(), std::this_thread::get_id());
  }
  std::mutex mu;
  std::vector<std::pair<size_t, std::thread::id>> batches;
};

// A batched request an I/O thread would make (it may run there), answered to `done`.
std::unique_ptr<InferenceRequest> FrontendRequest(ResponseCallback done) {
  auto req = std::make_unique<InferenceRequest>();
  req->model_name = "m";
  req->may_run_inline = true;
  Tensor t;
  t.name = "IN";
  t.dtype = DataType::kFp32;
  t.shape = {1, 4};
  std::memset(AllocateTensorData(t, 16), 0, 16);
  req->inputs.push_back(std::move(t));
  req->on_complete = std::move(done);
  return req;
}

// Several clients of an out-of-process model on one I/O thread: the requests the thread
// parses in one turn of its loop (a WakeBatch scope) run as one batch on that thread when
// the turn ends, and are answered there; no hand-off to the instance's thread and back.
TEST(RunToCompletion, OutOfProcessModelRunsAnIoTurnsRequestsAsOneBatchAtItsEnd) {
  auto model = LoadIdentity({.max_queue_delay_us = 0});
  std::vector<std::unique_ptr<BackendInstance>> instances;
  auto owned = std::make_unique<RecordingOutOfProcessInstance>();
  RecordingOutOfProcessInstance* instance = owned.get();
  instances.push_back(std::move(owned));
  Scheduler scheduler(model.get(), BatchingPolicyFromConfig(*model), std::move(instances));
  for (int i = 0; i < 8; ++i) Infer(scheduler, true, true);  // measured cheap from now on
  instance->batches.clear();
  NoteRequestFrom(1);
  NoteRequestFrom(2);
  ASSERT_FALSE(LoneClient());
  std::atomic<int> answered_here{0};
  {
    WakeBatch turn;
    for (int i = 0; i < 3; ++i) {
      auto req = FrontendRequest([&answered_here, me = std::this_thread::get_id()](
                                     std::unique_ptr<InferenceResponse> resp) {
        if (resp->status.ok() && std::this_thread::get_id() == me) ++answered_here;
      });
      ASSERT_TRUE(scheduler.Enqueue(req).ok());
    }
    // Nothing ran yet: the turn is still going.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard<std::mutex> lock(instance->mu);
    EXPECT_TRUE(instance->batches.empty());
  }
  std::lock_guard<std::mutex> lock(instance->mu);
  ASSERT_EQ(instance->batches.size(), 1u);
  EXPECT_EQ(instance->batches[0].first, 3u);
  EXPECT_EQ(instance->batches[0].second, std::this_thread::get_id());
  EXPECT_EQ(answered_here.load(), 3);
  scheduler.Drain();
  model->Drain();
}

// An instance whose Execute may run on several threads at once, and which, once armed,
// holds its next execution until released.
class ConcurrentInstance : public BackendInstance {
 public:
  void Execute(std::span<InferenceRequest* const>, std::span<InferenceResponse* const>) override {
    if (!armed_.exchange(false)) return;
    entered_.set_value();
    release_.wait();
  }
  bool ConcurrentExecute() const override { return true; }

  std::atomic<bool> armed_{false};
  std::promise<void> entered_;
  std::shared_future<void> release_;
};

// Two I/O threads reaching a cheap model's one instance: the second does not wait for
// the first (nor hand its request to the instance's thread), it executes beside it.
TEST(RunToCompletion, ConcurrentInstanceRunsOnEveryCallersThreadAtOnce) {
  auto model = LoadIdentity({});
  auto owned = std::make_unique<ConcurrentInstance>();
  ConcurrentInstance* instance = owned.get();
  std::vector<std::unique_ptr<BackendInstance>> instances;
  instances.push_back(std::move(owned));
  Scheduler scheduler(model.get(), BatchingPolicyFromConfig(*model), std::move(instances));
  for (int i = 0; i < 8; ++i) Infer(scheduler, true);  // measured cheap from now on

  std::promise<void> release;
  instance->release_ = release.get_future().share();
  auto entered = instance->entered_.get_future();
  instance->armed_ = true;
  std::thread::id first_thread, first_ran_on;
  std::thread first([&] {
    first_thread = std::this_thread::get_id();
    first_ran_on = Infer(scheduler, true).thread;
  });
  entered.wait();  // the first request holds the instance, on its caller's thread
  Outcome second = Infer(scheduler, true);
  EXPECT_EQ(second.thread, std::this_thread::get_id());
  EXPECT_TRUE(second.status.ok()) << second.status.message();
  release.set_value();
  first.join();
  EXPECT_EQ(first_ran_on, first_thread);
  // Still one instance: a request the frontend keeps off its thread goes to the worker.
  EXPECT_NE(Infer(scheduler, false).thread, std::this_thread::get_id());
  scheduler.Drain();
  EXPECT_EQ(model->stats().execution_count.load(), 11u);
  model->Drain();
}

// Stands for an I/O thread's event loop: the test's thread has one while it lives.
class LoopHere : public ReadinessWatch {
 public:
  LoopHere() { SetThreadReadinessWatch(this); }
  ~LoopHere() override { SetThreadReadinessWatch(nullptr); }
  void WhenReadable(int, std::function<void()>) override {}
};

// An out-of-process instance that starts batches without waiting (two at a time at most)
// and ends them when the test says. What it sees, and the answers, go into one log.
class PipelinedInstance : public OutOfProcessInstance {
 public:
  void Execute(std::span<InferenceRequest* const> requests,
               std::span<InferenceResponse* const>) override {
    Note("execute " + std::to_string(requests.size()));
  }
  bool StartExecute(std::span<InferenceRequest* const> requests,
                    std::span<InferenceResponse* const>, std::function<void()> done) override {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back("start " + std::to_string(requests.size()));
    running_.push_back(std::move(done));
    return true;
  }
  bool StartsWithoutWaiting() const override { return true; }
  size_t PipelineDepth() const override { return 2; }

  // Ends the oldest running batch, as the loop does when its reply is read.
  void EndOldest() {
    std::function<void()> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ASSERT_FALSE(running_.empty());
      done = std::move(running_.front());
      running_.erase(running_.begin());
    }
    done();
  }
  void Note(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back(what);
  }
  std::vector<std::string> TakeLog() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(log_, {});
  }

 private:
  std::mutex mu_;
  std::vector<std::string> log_;
  std::vector<std::function<void()>> running_;
};

// A scheduler over one PipelinedInstance, with several clients about.
struct PipelinedModel {
  PipelinedModel() {
    auto owned = std::make_unique<PipelinedInstance>();
    instance = owned.get();
    std::vector<std::unique_ptr<BackendInstance>> instances;
    instances.push_back(std::move(owned));
    scheduler = std::make_unique<Scheduler>(model.get(), BatchingPolicyFromConfig(*model),
                                            std::move(instances));
    NoteRequestFrom(1);
    NoteRequestFrom(2);
    EXPECT_FALSE(LoneClient());
  }
  ~PipelinedModel() {
    scheduler->Drain();  // returns: every batch has ended
    model->Drain();
  }
  // One turn of a loop: n requests tagged `tag` in their answers.
  void Turn(int n, const std::string& tag) {
    WakeBatch turn;
    for (int i = 0; i < n; ++i) {
      auto req = FrontendRequest([this, tag](std::unique_ptr<InferenceResponse> resp) {
        instance->Note("answer " + tag + (resp->status.ok() ? "" : " failed"));
      });
      ASSERT_TRUE(scheduler->Enqueue(req).ok());
    }
  }

  std::shared_ptr<ModelVersion> model = LoadIdentity({.max_queue_delay_us = 0});
  PipelinedInstance* instance = nullptr;
  std::unique_ptr<Scheduler> scheduler;
};

using Log = std::vector<std::string>;

// Such a model's turn batches go to the process without the loop's thread waiting (from
// its first request on: they need no cheap estimate), a second one goes behind the first,
// and the end of one starts what queued meanwhile before its own answers go out.
TEST(RunToCompletion, TurnBatchesStartWithoutWaitingTwoAtATime) {
  PipelinedModel m;
  LoopHere loop;
  m.Turn(3, "a");
  EXPECT_EQ(m.instance->TakeLog(), Log({"start 3"}));
  m.Turn(2, "b");
  EXPECT_EQ(m.instance->TakeLog(), Log({"start 2"}));
  m.Turn(1, "c");
  // Two running: the third waits in the queue, and no instance thread takes it.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(m.instance->TakeLog(), Log());
  EXPECT_EQ(m.scheduler->QueueSize(), 1u);
  m.instance->EndOldest();
  EXPECT_EQ(m.instance->TakeLog(), Log({"start 1", "answer a", "answer a", "answer a"}));
  m.instance->EndOldest();
  m.instance->EndOldest();
  EXPECT_EQ(m.instance->TakeLog(), Log({"answer b", "answer b", "answer c"}));
  EXPECT_EQ(m.model->stats().success.count.load(), 6u);
}

// Without a loop on the thread there is nothing to come back to: the blocking Execute.
TEST(RunToCompletion, TurnBatchWithoutALoopExecutesWaiting) {
  PipelinedModel m;
  m.Turn(2, "a");
  EXPECT_EQ(m.instance->TakeLog(), Log({"execute 2", "answer a", "answer a"}));
}

}  // namespace
}  // namespace flowserve
