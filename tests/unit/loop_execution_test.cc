// Batches an I/O thread's turn starts without waiting (BackendInstance::StartExecute): the
// thread is free while the batch runs, a second batch may follow the first, and the end
// of one starts what queued meanwhile before its own answers go out.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
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

std::shared_ptr<ModelVersion> LoadBatchingModel() {
  static const bool registered = [] {
    RegisterIdentityBackend();
    return true;
  }();
  (void)registered;
  auto cfg = std::make_shared<inference::ModelConfig>();
  cfg->set_name("m");
  cfg->set_backend("identity");
  cfg->set_max_batch_size(8);
  auto* in = cfg->add_input();
  in->set_name("IN");
  in->set_data_type(inference::TYPE_FP32);
  in->add_dims(-1);
  auto* out = cfg->add_output();
  out->set_name("OUT");
  out->set_data_type(inference::TYPE_FP32);
  out->add_dims(-1);
  cfg->mutable_dynamic_batching();
  auto model = std::make_shared<ModelVersion>("m", 1, cfg, "/nonexistent");
  Status st = model->Load({}, [](std::unique_ptr<InferenceRequest>) {});
  EXPECT_TRUE(st.ok()) << st.message();
  return model;
}

// Stands for an I/O thread's event loop: this test's thread has one while it lives.
class NoLoop : public ReadinessWatch {
 public:
  NoLoop() { SetThreadReadinessWatch(this); }
  ~NoLoop() override { SetThreadReadinessWatch(nullptr); }
  void WhenReadable(int, std::function<void()>) override {}
};

// An out-of-process instance that starts batches without waiting and ends them when the
// test says, two at a time at most. Everything it sees goes into one event log.
class PipelinedInstance : public BackendInstance {
 public:
  void Execute(std::span<InferenceRequest* const> requests,
               std::span<InferenceResponse* const>) override {
    std::lock_guard<std::mutex> lock(mu);
    log.push_back("execute " + std::to_string(requests.size()));
  }
  bool StartExecute(std::span<InferenceRequest* const> requests,
                    std::span<InferenceResponse* const> responses,
                    std::function<void()> done) override {
    std::lock_guard<std::mutex> lock(mu);
    log.push_back("start " + std::to_string(requests.size()));
    for (auto* r : responses) {
      Tensor t;
      t.name = "OUT";
      t.dtype = DataType::kFp32;
      t.shape = {1, 1};
      const float v = 5;
      std::memcpy(AllocateTensorData(t, sizeof v), &v, sizeof v);
      r->outputs.push_back(std::move(t));
    }
    running.push_back(std::move(done));
    return true;
  }
  bool StartsWithoutWaiting() const override { return true; }
  size_t PipelineDepth() const override { return 2; }
  bool WaitsOnAnotherProcess() const override { return true; }

  // Ends the oldest running batch, as the loop would on its reply.
  void EndOldest() {
    std::function<void()> done;
    {
      std::lock_guard<std::mutex> lock(mu);
      ASSERT_FALSE(running.empty());
      done = std::move(running.front());
      running.erase(running.begin());
    }
    done();
  }
  std::vector<std::string> Log() {
    std::lock_guard<std::mutex> lock(mu);
    return log;
  }
  void Note(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    log.push_back(what);
  }

  std::mutex mu;
  std::vector<std::string> log;
  std::vector<std::function<void()>> running;
};

void Enqueue(Scheduler& scheduler, PipelinedInstance* instance, int n, const std::string& tag) {
  for (int i = 0; i < n; ++i) {
    auto req = std::make_unique<InferenceRequest>();
    req->model_name = "m";
    req->may_run_inline = true;
    Tensor t;
    t.name = "IN";
    t.dtype = DataType::kFp32;
    t.shape = {1, 1};
    std::memset(AllocateTensorData(t, 4), 0, 4);
    req->inputs.push_back(std::move(t));
    req->on_complete = [instance, tag](std::unique_ptr<InferenceResponse> resp) {
      instance->Note("answer " + tag + (resp->status.ok() ? "" : " failed"));
    };
    ASSERT_TRUE(scheduler.Enqueue(req).ok());
  }
}

TEST(LoopExecution, TurnBatchesRunWithoutBlockingTheLoopTwoAtATime) {
  auto model = LoadBatchingModel();
  auto owned = std::make_unique<PipelinedInstance>();
  PipelinedInstance* instance = owned.get();
  std::vector<std::unique_ptr<BackendInstance>> instances;
  instances.push_back(std::move(owned));
  Scheduler scheduler(model.get(), BatchingPolicyFromConfig(*model), std::move(instances));
  // Measured cheap on the instance's own thread first (no loop, no turn).
  for (int i = 0; i < 8; ++i) {
    Enqueue(scheduler, instance, 1, "warm");
    while (instance->Log().size() < static_cast<size_t>(2 * (i + 1)))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  instance->log.clear();
  NoteRequestFrom(1);
  NoteRequestFrom(2);
  ASSERT_FALSE(LoneClient());

  NoLoop loop;
  {
    WakeBatch turn;
    Enqueue(scheduler, instance, 3, "a");
  }
  // The turn ended with the batch started, not answered: the thread was never held.
  EXPECT_EQ(instance->Log(), std::vector<std::string>({"start 3"}));
  {
    WakeBatch turn;
    Enqueue(scheduler, instance, 2, "b");
  }
  // A second batch goes behind the first at once.
  EXPECT_EQ(instance->Log(), std::vector<std::string>({"start 3", "start 2"}));
  {
    WakeBatch turn;
    Enqueue(scheduler, instance, 1, "c");
  }
  // Two running: the third waits in the queue, and no instance thread takes it.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(instance->Log().size(), 2u);
  EXPECT_EQ(scheduler.QueueSize(), 1u);

  // The first batch's end starts the waiting request before its own answers go out.
  instance->EndOldest();
  EXPECT_EQ(instance->Log(), std::vector<std::string>({"start 3", "start 2", "start 1", "answer a",
                                                       "answer a", "answer a"}));
  instance->EndOldest();
  instance->EndOldest();
  auto log = instance->Log();
  ASSERT_EQ(log.size(), 9u);
  EXPECT_EQ(std::vector<std::string>(log.begin() + 6, log.end()),
            std::vector<std::string>({"answer b", "answer b", "answer c"}));
  EXPECT_EQ(model->stats().success.count.load(), 8u + 6u);
  scheduler.Drain();  // returns: every batch has ended
  model->Drain();
}

// Without a loop on the thread (an instance thread, gRPC) nothing starts that way.
TEST(LoopExecution, NoLoopMeansTheBlockingExecute) {
  auto model = LoadBatchingModel();
  auto owned = std::make_unique<PipelinedInstance>();
  PipelinedInstance* instance = owned.get();
  std::vector<std::unique_ptr<BackendInstance>> instances;
  instances.push_back(std::move(owned));
  Scheduler scheduler(model.get(), BatchingPolicyFromConfig(*model), std::move(instances));
  for (int i = 0; i < 8; ++i) {
    Enqueue(scheduler, instance, 1, "warm");
    while (instance->Log().size() < static_cast<size_t>(2 * (i + 1)))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  instance->log.clear();
  NoteRequestFrom(1);
  NoteRequestFrom(2);
  {
    WakeBatch turn;
    Enqueue(scheduler, instance, 2, "a");
  }
  EXPECT_EQ(instance->Log(), std::vector<std::string>({"execute 2", "answer a", "answer a"}));
  scheduler.Drain();
  model->Drain();
}

}  // namespace
}  // namespace flowserve
