#include "core/statistics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>

namespace flowserve {
namespace {

constexpr size_t kKinds = static_cast<size_t>(LatencyKind::kCount);

std::atomic<const HistogramBuckets*> g_buckets[kKinds];

// Replaced bucket sets stay alive: a request thread may still be reading one.
std::mutex g_retired_mu;
std::vector<std::unique_ptr<HistogramBuckets>> g_retired;

}  // namespace

const char* FailureReasonName(FailureReason reason) {
  switch (reason) {
    case FailureReason::kRejected:
      return "REJECTED";
    case FailureReason::kCanceled:
      return "CANCELED";
    case FailureReason::kBackend:
      return "BACKEND";
    default:
      return "OTHER";
  }
}

Result<std::vector<double>> ParseHistogramBuckets(const std::string& text) {
  std::vector<double> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    char* end = nullptr;
    double v = item.empty() ? NAN : std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !std::isfinite(v) || v <= 0) {
      return InvalidArgument("histogram bucket '" + item + "' in '" + text +
                             "' is not a positive number of milliseconds");
    }
    if (!out.empty() && v <= out.back()) {
      return InvalidArgument("histogram buckets '" + text + "' must be strictly ascending");
    }
    out.push_back(v);
    pos = comma + 1;
  }
  if (out.size() > HistogramBuckets::kMaxBuckets) {
    return InvalidArgument("histogram buckets '" + text + "': at most " +
                           std::to_string(HistogramBuckets::kMaxBuckets) + " bounds");
  }
  return out;
}

void SetLatencyHistogramBuckets(LatencyKind kind, const std::vector<double>& bounds_ms) {
  std::unique_ptr<HistogramBuckets> b;
  if (!bounds_ms.empty()) {
    b = std::make_unique<HistogramBuckets>();
    size_t n = std::min(bounds_ms.size(), HistogramBuckets::kMaxBuckets);
    b->bounds_ms.assign(bounds_ms.begin(), bounds_ms.begin() + n);
    for (double ms : b->bounds_ms) b->bounds_ns.push_back(static_cast<uint64_t>(ms * 1e6));
  }
  std::lock_guard<std::mutex> lock(g_retired_mu);
  g_buckets[static_cast<size_t>(kind)].store(b.get(), std::memory_order_release);
  if (b) g_retired.push_back(std::move(b));
}

const HistogramBuckets* LatencyHistogramBuckets(LatencyKind kind) {
  return g_buckets[static_cast<size_t>(kind)].load(std::memory_order_acquire);
}

void LatencyHistogram::Observe(uint64_t duration_ns, const HistogramBuckets& buckets) {
  // Prometheus buckets are "less than or equal": the first bound >= the value.
  size_t i = std::lower_bound(buckets.bounds_ns.begin(), buckets.bounds_ns.end(), duration_ns) -
             buckets.bounds_ns.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(duration_ns, std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::Read(const HistogramBuckets& buckets) const {
  Snapshot s;
  s.cumulative.reserve(buckets.bounds_ns.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= buckets.bounds_ns.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return s;
}

void ModelStatistics::RecordSuccess(const RequestTimes& t, int64_t batch_size) {
  success.Add(t.total_ns);
  queue.Add(t.queue_ns);
  compute_input.Add(t.compute_input_ns);
  compute_infer.Add(t.compute_infer_ns);
  compute_output.Add(t.compute_output_ns);
  inference_count.fetch_add(batch_size, std::memory_order_relaxed);
  if (auto* b = LatencyHistogramBuckets(LatencyKind::kRequest)) {
    request_histogram.Observe(t.total_ns, *b);
  }
  if (auto* b = LatencyHistogramBuckets(LatencyKind::kQueue)) {
    queue_histogram.Observe(t.queue_ns, *b);
  }
  if (auto* b = LatencyHistogramBuckets(LatencyKind::kCompute)) {
    compute_histogram.Observe(t.compute_infer_ns, *b);
  }
}

void ModelStatistics::RecordBatch(uint64_t batch_size, uint64_t input_ns, uint64_t infer_ns,
                                  uint64_t output_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& b = batches_[batch_size];
  b.batch_size = batch_size;
  b.count++;
  b.compute_input_ns += input_ns;
  b.compute_infer_ns += infer_ns;
  b.compute_output_ns += output_ns;
}

std::vector<BatchStatSnapshot> ModelStatistics::BatchStats() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<BatchStatSnapshot> out;
  out.reserve(batches_.size());
  for (const auto& [_, b] : batches_) out.push_back(b);
  return out;
}

uint64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace flowserve
