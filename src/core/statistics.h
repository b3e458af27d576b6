#pragma once
// Per model-version counters behind the statistics extension and the Prometheus
// metrics. Every per-request update is a relaxed atomic; only batch_stats takes a lock,
// once per executed batch. Latency histograms are recorded here too, against bucket
// bounds the metrics service sets process-wide (none set: nothing is observed).
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowserve {

struct DurationStat {
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> ns{0};
  void Add(uint64_t duration_ns, uint64_t n = 1) {
    count.fetch_add(n, std::memory_order_relaxed);
    ns.fetch_add(duration_ns, std::memory_order_relaxed);
  }
};

// Triton's `reason` label of nv_inference_request_failure.
enum class FailureReason { kRejected = 0, kCanceled, kBackend, kOther, kCount };
const char* FailureReasonName(FailureReason reason);

// A DurationStat that also remembers why each failure happened. Add() without a reason
// counts as OTHER, so callers that only know "it failed" stay correct.
struct FailureStat : DurationStat {
  std::array<std::atomic<uint64_t>, static_cast<size_t>(FailureReason::kCount)> by_reason{};
  void Add(uint64_t duration_ns, uint64_t n = 1) { Add(FailureReason::kOther, duration_ns, n); }
  void Add(FailureReason reason, uint64_t duration_ns, uint64_t n = 1) {
    by_reason[static_cast<size_t>(reason)].fetch_add(n, std::memory_order_relaxed);
    DurationStat::Add(duration_ns, n);
  }
  uint64_t Count(FailureReason reason) const {
    return by_reason[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
  }
};

// Which latency a histogram observes.
enum class LatencyKind { kRequest = 0, kQueue, kCompute, kCount };

// Upper bounds of a histogram's buckets, ascending, in milliseconds (the unit of
// Triton's histogram families); +Inf is implicit.
struct HistogramBuckets {
  static constexpr size_t kMaxBuckets = 32;
  std::vector<double> bounds_ms;
  std::vector<uint64_t> bounds_ns;  // the same bounds, for comparing without floats
};

// "0.5,1,2.5": ascending, positive, finite, at most kMaxBuckets.
Result<std::vector<double>> ParseHistogramBuckets(const std::string& text);

// Process-wide bucket bounds; empty turns that histogram off. Meant to be set once at
// start-up: counts observed under earlier bounds are not re-bucketed.
void SetLatencyHistogramBuckets(LatencyKind kind, const std::vector<double>& bounds_ms);
// nullptr when that histogram is off.
const HistogramBuckets* LatencyHistogramBuckets(LatencyKind kind);

class LatencyHistogram {
 public:
  void Observe(uint64_t duration_ns, const HistogramBuckets& buckets);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    uint64_t sum_ns = 0;
  };
  Snapshot Read(const HistogramBuckets& buckets) const;

 private:
  std::array<std::atomic<uint64_t>, HistogramBuckets::kMaxBuckets + 1> counts_{};
  std::atomic<uint64_t> sum_ns_{0};
};

struct BatchStatSnapshot {
  uint64_t batch_size = 0;
  uint64_t count = 0;
  uint64_t compute_input_ns = 0;
  uint64_t compute_infer_ns = 0;
  uint64_t compute_output_ns = 0;
};

// Where one successful request's time went, as Triton splits it.
struct RequestTimes {
  uint64_t total_ns = 0;  // arrival to response
  uint64_t queue_ns = 0;
  uint64_t compute_input_ns = 0;
  uint64_t compute_infer_ns = 0;
  uint64_t compute_output_ns = 0;
};

class ModelStatistics {
 public:
  // Triton's inference_stats. Queue and compute are counted per successful request,
  // each request of a batch being charged the whole batch's compute time.
  DurationStat success, queue, compute_input, compute_infer, compute_output, cache_hit, cache_miss;
  FailureStat fail;
  std::atomic<uint64_t> inference_count{0};    // inferences (batch elements) that succeeded
  std::atomic<uint64_t> execution_count{0};    // backend executions (batches)
  std::atomic<uint64_t> last_inference_ms{0};  // wall clock, ms since epoch
  // Accepted but not yet handed to an instance (Triton's pending request count).
  std::atomic<int64_t> pending_requests{0};

  LatencyHistogram request_histogram, queue_histogram, compute_histogram;

  void RecordSuccess(const RequestTimes& times, int64_t batch_size);
  void RecordFailure(FailureReason reason, uint64_t total_ns) { fail.Add(reason, total_ns); }
  void RecordBatch(uint64_t batch_size, uint64_t input_ns, uint64_t infer_ns, uint64_t output_ns);
  std::vector<BatchStatSnapshot> BatchStats() const;

 private:
  mutable std::mutex mu_;
  std::map<uint64_t, BatchStatSnapshot> batches_;
};

uint64_t WallClockMs();

}  // namespace flowserve
