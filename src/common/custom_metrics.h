#pragma once
// Metrics that model code defines (the Python backend's pb_utils.MetricFamily/Metric),
// process-wide and rendered on /metrics after the server's own. As in Triton: a family
// is known by its name (the first description wins; the same name with another kind is
// an error), and a metric by its family and label set, so two instances that create the
// same one share it. Whoever creates them is an owner; when the last owner of a metric
// is released (its model instance is unloaded) the metric disappears, and so does a
// family with no metrics and no owners left.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowserve::custom_metrics {

enum class Kind { kCounter = 0, kGauge = 1, kHistogram = 2 };

uint64_t NewOwner();
// Drops every family and metric reference `owner` took.
void ReleaseOwner(uint64_t owner);

// Returns the family's id.
Result<uint64_t> AddFamily(uint64_t owner, const std::string& name, const std::string& description,
                           Kind kind);
// Returns the metric's id. `buckets` (histograms only, required there) are upper bounds,
// strictly increasing.
Result<uint64_t> AddMetric(uint64_t owner, uint64_t family,
                           const std::map<std::string, std::string>& labels,
                           const std::vector<double>& buckets);

Status Increment(uint64_t metric, double value);  // counters (value >= 0) and gauges
Status Set(uint64_t metric, double value);        // gauges
Status Observe(uint64_t metric, double value);    // histograms
Result<double> Value(uint64_t metric);            // a histogram's: the sum of observations

// Every family in the Prometheus text exposition format.
std::string Render();

}  // namespace flowserve::custom_metrics
