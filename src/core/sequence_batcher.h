#pragma once
// Triton's sequence batcher for stateful models (sequence_batching). Each live sequence
// (correlation id) is bound to a slot of one instance until it ends or goes idle; its
// requests run one at a time, in arrival order, and the model sees control inputs
// (START, END, READY, CORRID) and the slot's implicit state with each of them. New
// sequences wait in a bounded backlog while every slot is taken.
//   direct: slot i is batch row i; rows of slots with nothing to run are filled with
//           null requests (READY false) up to the highest row that has a request.
//   oldest: a dynamic batch of the next requests of the oldest sequences.
#include <memory>
#include <vector>

#include "common/status.h"
#include "core/inference_request.h"

namespace flowserve {

class BackendInstance;
class ModelVersion;

// A stateful model's warmup sample runs straight on an instance: this gives it what the
// sequence batcher would give a one-request sequence (START, END and READY true, CORRID
// 0 or "", the initial state), `batch` rows of each (0: no batch dim).
Status AddWarmupSequenceInputs(const ModelVersion& model, int64_t batch, InferenceRequest& request);

class SequenceBatcher {
 public:
  static Result<std::unique_ptr<SequenceBatcher>> Create(
      ModelVersion* model, std::vector<std::unique_ptr<BackendInstance>> instances);
  ~SequenceBatcher();

  // Takes the request on success; leaves it with the caller on error.
  Status Enqueue(std::unique_ptr<InferenceRequest>& request);
  // Stops accepting; every accepted request is answered before it returns.
  void Drain();
  size_t QueueSize() const;

  struct Impl;

 private:
  explicit SequenceBatcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowserve
