#pragma once
// What a frontend hands the core: one inference on one model, protocol-free.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace flowserve {

struct InferenceResponse;
class ResponseSender;
struct RequestTrace;

// A request or response parameter: KServe allows bool, int64, string (and double).
using ParameterValue = std::variant<bool, int64_t, double, std::string>;
using Parameters = std::map<std::string, ParameterValue>;

struct RequestedOutput {
  std::string name;
  uint32_t classification = 0;  // >0: return the top-N classes as BYTES
};

using ResponseCallback = std::function<void(std::unique_ptr<InferenceResponse>)>;

inline uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct InferenceRequest {
  std::string model_name;
  int64_t model_version = -1;  // -1: the newest ready version
  std::string id;
  std::vector<Tensor> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every output in the config
  Parameters parameters;                 // other request parameters, passed to backends

  // Scheduling parameters (Triton's "priority", "timeout" in microseconds).
  uint64_t priority = 0;
  uint64_t timeout_us = 0;
  // Sequence batching.
  uint64_t correlation_id = 0;
  std::string correlation_id_str;
  bool sequence_start = false;
  bool sequence_end = false;

  // Filled by the core during validation.
  int64_t batch_size = 1;
  uint64_t arrival_ns = 0;
  uint64_t enqueue_ns = 0;

  // Called once per response. A frontend that can deliver several (gRPC streaming, BLS)
  // sets multiple_responses; decoupled models refuse other requests with
  // "<endpoint> doesn't support models with decoupled transaction policy".
  ResponseCallback on_complete;
  bool multiple_responses = false;
  const char* endpoint = "this endpoint";
  // The frontend calls from a thread that may execute this request itself and answer
  // it there (an I/O thread whose reply to its own connection needs no hand-off). The
  // scheduler decides whether it does (Scheduler: cheap model, idle instance, empty
  // queue); requests derived from this one (ensemble steps) never inherit it.
  bool may_run_inline = false;
  // Decoupled models only: set by the scheduler before Execute, in place of on_complete.
  std::shared_ptr<ResponseSender> response_sender;
  // Set when this request is sampled for tracing (core/request_trace.h).
  std::shared_ptr<RequestTrace> trace;

  const Tensor* FindInput(const std::string& name) const {
    for (const auto& t : inputs)
      if (t.name == name) return &t;
    return nullptr;
  }
};

}  // namespace flowserve
