#include "frontends/metrics/metrics_settings.h"

#include "common/logging.h"
#include "core/statistics.h"

namespace flowserve {

// From well under a millisecond (an identity model) to seconds (a large CPU model): a
// 1-2.5-5 ladder keeps quantile estimates within a factor of ~2.5 anywhere in range.
const std::vector<double> kDefaultRequestBucketsMs = {0.5, 1,   2.5, 5,    10,   25,   50,
                                                      100, 250, 500, 1000, 2500, 5000, 10000};

namespace {

Result<bool> ParseBool(const std::string& key, const std::string& v) {
  if (v == "true" || v == "1" || v == "on") return true;
  if (v == "false" || v == "0" || v == "off") return false;
  return InvalidArgument("--metrics-config " + key + "=" + v + ": expected true or false");
}

Result<std::vector<double>> Buckets(const std::string& key, const std::string& v) {
  if (v.empty()) return std::vector<double>{};
  auto b = ParseHistogramBuckets(v);
  if (!b.ok()) return b.status().WithContext("--metrics-config " + key + ": ");
  return b;
}

}  // namespace

Result<MetricsSettings> ParseMetricsSettings(const MetricsOptions& options) {
  MetricsSettings s;
  s.request_buckets = kDefaultRequestBucketsMs;
  s.cpu_metrics = options.allow_cpu_metrics;
  s.interval_ms = options.interval_ms > 0 ? options.interval_ms : 2000;
  bool histograms = true;
  for (const std::string& entry : options.config) {
    auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument("--metrics-config " + entry + ": expected <setting>=<value>");
    }
    std::string key = entry.substr(0, eq), value = entry.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    if (key == "counter_latencies") {
      auto b = ParseBool(key, value);
      if (!b.ok()) return b.status();
      s.counter_latencies = *b;
    } else if (key == "histogram_latencies") {
      auto b = ParseBool(key, value);
      if (!b.ok()) return b.status();
      histograms = *b;
    } else if (key == "histogram_buckets") {
      auto b = Buckets(key, value);
      if (!b.ok()) return b.status();
      s.request_buckets = s.queue_buckets = s.compute_buckets = *b;
    } else if (key == "histogram_request_buckets") {
      auto b = Buckets(key, value);
      if (!b.ok()) return b.status();
      s.request_buckets = *b;
    } else if (key == "histogram_queue_buckets") {
      auto b = Buckets(key, value);
      if (!b.ok()) return b.status();
      s.queue_buckets = *b;
    } else if (key == "histogram_compute_buckets") {
      auto b = Buckets(key, value);
      if (!b.ok()) return b.status();
      s.compute_buckets = *b;
    } else if (key == "summary_latencies" || key == "summary_quantiles") {
      FS_LOG_WARNING(
          "--metrics-config {}: summaries are not supported; latency histograms "
          "(histogram_latencies, histogram_*_buckets) give the same quantiles",
          key);
    } else {
      return InvalidArgument(
          "--metrics-config " + entry +
          ": unknown setting; known: counter_latencies, histogram_latencies, "
          "histogram_buckets, histogram_request_buckets, histogram_queue_buckets, "
          "histogram_compute_buckets");
    }
  }
  if (!histograms) {
    s.request_buckets.clear();
    s.queue_buckets.clear();
    s.compute_buckets.clear();
  }
  return s;
}

}  // namespace flowserve
