#pragma once
// What --metrics-config and the other metrics flags ask for, checked once at start-up.
#include <string>
#include <vector>

#include "common/status.h"
#include "frontends/metrics/metrics_server.h"

namespace flowserve {

struct MetricsSettings {
  bool counter_latencies = true;  // the *_duration_us counters (Triton's default)
  // Prometheus histograms, in ms like Triton's histogram families. Request latency is
  // on by default; queue and compute latency when given buckets. Empty: off.
  std::vector<double> request_buckets, queue_buckets, compute_buckets;
  bool cpu_metrics = true;
  int interval_ms = 2000;
};

// Keys (Triton's where Triton has one):
//   counter_latencies=<bool>     histogram_latencies=<bool> (all histograms)
//   histogram_buckets=<ms,...>   bounds for every histogram, turning all of them on
//   histogram_request_buckets= / histogram_queue_buckets= / histogram_compute_buckets=
//                                bounds for one; an empty list turns that one off
//   summary_latencies, summary_quantiles: accepted and ignored (a warning is logged)
Result<MetricsSettings> ParseMetricsSettings(const MetricsOptions& options);

extern const std::vector<double> kDefaultRequestBucketsMs;

}  // namespace flowserve
