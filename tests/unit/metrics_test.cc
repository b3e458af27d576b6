// The statistics behind /metrics: histogram buckets, per-request recording and failure
// reasons. The exposition itself is checked end to end (tests/e2e/test_metrics.py).
#include <gtest/gtest.h>

#include "core/statistics.h"

namespace flowserve {
namespace {

TEST(HistogramBuckets, ParsesAscendingPositiveLists) {
  auto b = ParseHistogramBuckets("0.5,1,2.5,100");
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(b.value(), (std::vector<double>{0.5, 1, 2.5, 100}));
  for (const char* bad : {"", "1,,2", "2,1", "1,1", "-1", "0", "abc", "1,inf", "1;2"}) {
    EXPECT_FALSE(ParseHistogramBuckets(bad).ok()) << bad;
  }
  std::string many;
  for (int i = 1; i <= 33; ++i) many += (i > 1 ? "," : "") + std::to_string(i);
  auto r = ParseHistogramBuckets(many);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("32"), std::string::npos);
}

TEST(LatencyHistogram, BucketsAreLessOrEqualAndCumulative) {
  HistogramBuckets b;
  b.bounds_ms = {1, 10};
  b.bounds_ns = {1000000, 10000000};
  LatencyHistogram h;
  h.Observe(1000000, b);   // exactly 1 ms: in le="1"
  h.Observe(1000001, b);   // just above: le="10"
  h.Observe(50000000, b);  // 50 ms: only +Inf
  auto s = h.Read(b);
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(s.sum_ns, 52000001u);
}

TEST(ModelStatistics, RecordsPerRequestAndObservesOnlyEnabledHistograms) {
  SetLatencyHistogramBuckets(LatencyKind::kRequest, {1, 100});
  SetLatencyHistogramBuckets(LatencyKind::kQueue, {});
  SetLatencyHistogramBuckets(LatencyKind::kCompute, {});
  ModelStatistics st;
  RequestTimes t{.total_ns = 5000000,
                 .queue_ns = 1000,
                 .compute_input_ns = 10,
                 .compute_infer_ns = 200,
                 .compute_output_ns = 30};
  st.RecordSuccess(t, 4);
  st.RecordSuccess(t, 1);
  EXPECT_EQ(st.success.count, 2u);
  EXPECT_EQ(st.inference_count, 5u);
  for (const DurationStat* d :
       {&st.queue, &st.compute_input, &st.compute_infer, &st.compute_output}) {
    EXPECT_EQ(d->count, 2u);
  }
  EXPECT_EQ(st.compute_infer.ns, 400u);
  auto req = st.request_histogram.Read(*LatencyHistogramBuckets(LatencyKind::kRequest));
  EXPECT_EQ(req.cumulative, (std::vector<uint64_t>{0, 2, 2}));
  EXPECT_EQ(LatencyHistogramBuckets(LatencyKind::kQueue), nullptr);
  SetLatencyHistogramBuckets(LatencyKind::kRequest, {});
  st.RecordSuccess(t, 1);
  EXPECT_EQ(st.success.count, 3u);  // counters do not depend on histograms
}

TEST(FailureStat, CountsEachFailureUnderOneReason) {
  ModelStatistics st;
  st.RecordFailure(FailureReason::kRejected, 10);
  st.RecordFailure(FailureReason::kBackend, 20);
  st.fail.Add(30);  // a caller that only knows it failed
  EXPECT_EQ(st.fail.count, 3u);
  EXPECT_EQ(st.fail.ns, 60u);
  EXPECT_EQ(st.fail.Count(FailureReason::kRejected), 1u);
  EXPECT_EQ(st.fail.Count(FailureReason::kBackend), 1u);
  EXPECT_EQ(st.fail.Count(FailureReason::kOther), 1u);
  EXPECT_EQ(st.fail.Count(FailureReason::kCanceled), 0u);
  EXPECT_STREQ(FailureReasonName(FailureReason::kCanceled), "CANCELED");
}

}  // namespace
}  // namespace flowserve
