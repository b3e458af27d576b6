#pragma once
// Runs an ensemble's requests through its step graph. A step starts as soon as the
// tensors it reads exist, so independent steps run concurrently; each step is an
// ordinary request to its composing model (its scheduler batches it with the rest of
// that model's traffic). Tensors move between steps as views sharing their owner:
// one step's output buffer is the next step's input, never copied. Each response of a
// decoupled step carries the rest of the graph on its own (a branch), and the ensemble
// answers once per finished branch, then with the final flag.
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

#include "core/ensemble_plan.h"
#include "core/inference_request.h"
#include "core/model_version.h"

namespace flowserve {

// What an ensemble needs from the core around it.
struct EnsembleEnvironment {
  ModelFinder find_model;
  // Routes a step's request to its model as a frontend's request would be routed; a
  // request that cannot be queued is answered through its on_complete.
  std::function<void(std::unique_ptr<InferenceRequest>)> dispatch;
};

class EnsembleScheduler : public ModelExecutor {
 public:
  // Validates the ensemble against the composing models `env` finds now.
  static Result<std::unique_ptr<EnsembleScheduler>> Create(ModelVersion* model,
                                                           const EnsembleEnvironment& env);
  ~EnsembleScheduler() override;

  Status Enqueue(std::unique_ptr<InferenceRequest>& request) override;
  void Drain() override;
  size_t QueueSize() const override;
  // Some step is a decoupled model, so a request may have any number of responses.
  bool decoupled() const { return plan_.decoupled; }

 private:
  struct Run;
  struct Branch;
  EnsembleScheduler(ModelVersion* model, EnsemblePlan plan,
                    std::function<void(std::unique_ptr<InferenceRequest>)> dispatch);

  void Start(const std::shared_ptr<Run>& run, const std::shared_ptr<Branch>& branch,
             const std::vector<int>& steps);
  void OnStepDone(const std::shared_ptr<Run>& run, const std::shared_ptr<Branch>& branch, int step,
                  std::unique_ptr<InferenceResponse> response);
  // Takes a step's outputs into `branch`; the steps that became ready are appended.
  Status Absorb(Branch& branch, int step, InferenceResponse& response, std::vector<int>& ready);
  // Answers the request: with `branch`'s outputs (null: the final flag alone, or the
  // error in run.error); `final` ends it.
  void Respond(Run& run, const Branch* branch, bool final, std::unique_lock<std::mutex>& lock);
  void RunEnded();

  ModelVersion* model_;
  const EnsemblePlan plan_;
  std::function<void(std::unique_ptr<InferenceRequest>)> dispatch_;

  mutable std::mutex mu_;
  std::condition_variable idle_;
  size_t active_ = 0;  // runs alive, including steps still finishing after a failure
  bool draining_ = false;
};

}  // namespace flowserve
