#pragma once
// One sampled request's trace. The threads that own the request in turn (frontend,
// scheduler, backend instance) only store timestamps into it; the finished record is
// handed to the trace writer, which serializes and writes it off the request path.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/tensor.h"

namespace flowserve {

struct InferenceRequest;
struct InferenceResponse;
class TraceSession;

// In the order a request passes them. COMPUTE_INPUT_END and COMPUTE_OUTPUT_START are
// the edges of the backend's Execute call: the backend interface reports nothing finer,
// so a backend's own input and output copies count as compute time between them.
enum TracePoint : int {
  kTraceRequestStart,
  kTraceQueueStart,
  kTraceComputeStart,
  kTraceComputeInputEnd,
  kTraceComputeOutputStart,
  kTraceComputeEnd,
  kTraceRequestEnd,
  kTracePointCount
};
const char* TracePointName(int point);

// A copy of a tensor taken at TENSORS level (its buffer may be gone by the time the
// writer gets to it).
struct TracedTensor {
  const char* activity;  // TENSOR_QUEUE_INPUT | TENSOR_BACKEND_OUTPUT
  std::string name;
  DataType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

struct RequestTrace {
  uint64_t id = 0;
  uint64_t parent_id = 0;  // 0: not a step of a traced ensemble
  std::string model_name;
  int64_t model_version = -1;
  bool timestamps = false;             // level TIMESTAMPS
  bool tensors = false;                // level TENSORS
  uint64_t ns[kTracePointCount] = {};  // steady clock, 0: not reached
  std::vector<TracedTensor> tensor_records;
  std::shared_ptr<TraceSession> session;  // where the finished record goes

  void Stamp(TracePoint point, uint64_t ns_now) { ns[point] = ns_now; }
  void CaptureTensors(const char* activity, const std::vector<Tensor>& tensors);
};

// The request entered model version `version`'s queue at `ns_now`.
void TraceQueued(RequestTrace& trace, int64_t version, uint64_t ns_now,
                 const std::vector<Tensor>& inputs);

// The scheduler ran the request's batch: COMPUTE_START when it left the queue, the
// backend's Execute between input_end and output_start, COMPUTE_END once the response
// was complete. At TENSORS level the response's outputs are copied.
void TraceExecuted(RequestTrace& trace, uint64_t start, uint64_t input_end, uint64_t output_start,
                   uint64_t end, const InferenceResponse& response);

// A trace for an ensemble step: same level and destination, a new id, parent_id linking
// it to the ensemble's trace.
std::shared_ptr<RequestTrace> StartChildTrace(const RequestTrace& parent,
                                              const std::string& model_name, uint64_t ns_now);

// Stamps REQUEST_END and passes the record to the writer: call once the request's final
// response was handed back.
void FinishTrace(std::shared_ptr<RequestTrace> trace);

// Makes the request's on_complete call FinishTrace after its final response. No-op for
// an untraced request.
void TraceUntilComplete(InferenceRequest& request);

// Ids unique within the process, from 1.
uint64_t NextTraceId();

// Appends the trace's JSON records (Triton's format), comma-separated, to `out`.
void AppendTraceJson(const RequestTrace& trace, std::string& out);

}  // namespace flowserve
