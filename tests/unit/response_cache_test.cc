#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "core/inference_response.h"
#include "core/request_hash.h"
#include "core/response_cache.h"

namespace flowserve {
namespace {

// An entry that charges exactly `size` bytes.
std::shared_ptr<const CachedResponse> Entry(size_t size) {
  auto e = std::make_shared<CachedResponse>();
  e->byte_size = size;
  return e;
}

ResponseCacheKey Key(uint64_t n) { return ResponseCacheKey{n, ~n}; }

TEST(ResponseCacheTest, HitAfterInsertMissBefore) {
  ResponseCache cache(1000);
  EXPECT_EQ(cache.Lookup(Key(1)), nullptr);
  auto e = Entry(100);
  EXPECT_TRUE(cache.Insert(Key(1), e));
  EXPECT_EQ(cache.Lookup(Key(1)), e);
  // Same low half, different high half: a different key.
  EXPECT_EQ(cache.Lookup(ResponseCacheKey{1, 0}), nullptr);
  auto c = cache.Read();
  EXPECT_EQ(c.lookups, 3u);
  EXPECT_EQ(c.hits, 1u);
  EXPECT_EQ(c.misses, 2u);
  EXPECT_EQ(c.entries, 1u);
  EXPECT_EQ(c.used_bytes, 100u);
}

TEST(ResponseCacheTest, EvictsLeastRecentlyUsedUntilTheNewEntryFits) {
  ResponseCache cache(300);
  ASSERT_TRUE(cache.Insert(Key(1), Entry(100)));
  ASSERT_TRUE(cache.Insert(Key(2), Entry(100)));
  ASSERT_TRUE(cache.Insert(Key(3), Entry(100)));
  ASSERT_NE(cache.Lookup(Key(1)), nullptr);  // 1 is now the most recent; 2 the oldest
  ASSERT_TRUE(cache.Insert(Key(4), Entry(100)));
  EXPECT_EQ(cache.Lookup(Key(2)), nullptr);
  EXPECT_NE(cache.Lookup(Key(1)), nullptr);
  EXPECT_NE(cache.Lookup(Key(3)), nullptr);
  EXPECT_NE(cache.Lookup(Key(4)), nullptr);
  // Recency now 4, 3, 1 (the lookups above). Needing 200 evicts the two least
  // recently used: 1, then 3.
  ASSERT_TRUE(cache.Insert(Key(5), Entry(200)));
  EXPECT_EQ(cache.Lookup(Key(1)), nullptr);
  EXPECT_EQ(cache.Lookup(Key(3)), nullptr);
  EXPECT_NE(cache.Lookup(Key(4)), nullptr);
  EXPECT_NE(cache.Lookup(Key(5)), nullptr);
  auto c = cache.Read();
  EXPECT_EQ(c.evictions, 3u);
  EXPECT_EQ(c.used_bytes, 300u);
  EXPECT_EQ(c.entries, 2u);
}

TEST(ResponseCacheTest, EntryLargerThanTheCacheIsNotStoredAndEvictsNothing) {
  ResponseCache cache(300);
  ASSERT_TRUE(cache.Insert(Key(1), Entry(300)));  // exactly the capacity fits
  EXPECT_FALSE(cache.Insert(Key(2), Entry(301)));
  EXPECT_NE(cache.Lookup(Key(1)), nullptr);
  EXPECT_EQ(cache.Lookup(Key(2)), nullptr);
  EXPECT_EQ(cache.Read().evictions, 0u);
}

TEST(ResponseCacheTest, ReinsertingAKeyReplacesItsEntryAndItsBytes) {
  ResponseCache cache(300);
  ASSERT_TRUE(cache.Insert(Key(1), Entry(200)));
  auto newer = Entry(50);
  ASSERT_TRUE(cache.Insert(Key(1), newer));
  EXPECT_EQ(cache.Lookup(Key(1)), newer);
  auto c = cache.Read();
  EXPECT_EQ(c.entries, 1u);
  EXPECT_EQ(c.used_bytes, 50u);
  EXPECT_EQ(c.evictions, 0u);
}

TEST(ResponseCacheTest, EvictedEntryStaysValidForWhoeverHoldsIt) {
  ResponseCache cache(100);
  InferenceResponse r;
  Tensor t;
  t.name = "OUT";
  t.dtype = DataType::kInt32;
  t.shape = {2};
  const int32_t v[2] = {7, 9};
  std::memcpy(AllocateTensorData(t, sizeof(v)), v, sizeof(v));
  r.outputs.push_back(t);
  auto entry = MakeCachedResponse(r);
  EXPECT_EQ(entry->byte_size, CachedResponseSize(r));
  EXPECT_GT(entry->byte_size, sizeof(v));
  ResponseCache big(entry->byte_size);
  ASSERT_TRUE(big.Insert(Key(1), entry));
  auto held = big.Lookup(Key(1));
  ASSERT_TRUE(big.Insert(Key(2), Entry(entry->byte_size)));  // evicts key 1
  EXPECT_EQ(big.Lookup(Key(1)), nullptr);
  ASSERT_EQ(held->outputs.size(), 1u);
  EXPECT_EQ(held->outputs[0].name, "OUT");
  EXPECT_EQ(held->outputs[0].shape, std::vector<int64_t>{2});
  EXPECT_EQ(std::memcmp(held->outputs[0].data, v, sizeof(v)), 0);
  // A copy, not a view of the response's buffer.
  EXPECT_NE(held->outputs[0].data, t.data);
}

TEST(ResponseCacheTest, ConcurrentUseKeepsTheBytesBounded) {
  ResponseCache cache(1000);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      for (uint64_t i = 0; i < 2000; ++i) {
        const uint64_t k = (i * 7 + t) % 50;
        if (!cache.Lookup(Key(k))) cache.Insert(Key(k), Entry(10 + k * 3));
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  auto c = cache.Read();
  EXPECT_LE(c.used_bytes, 1000u);
  EXPECT_EQ(c.lookups, 8000u);
  EXPECT_EQ(c.hits + c.misses, c.lookups);
}

Tensor Input(const std::string& name, std::vector<float> v) {
  Tensor t;
  t.name = name;
  t.dtype = DataType::kFp32;
  t.shape = {static_cast<int64_t>(v.size())};
  std::memcpy(AllocateTensorData(t, v.size() * 4), v.data(), v.size() * 4);
  return t;
}

TEST(RequestHashTest, SameRequestSameKeyAndEachPartChangesIt) {
  InferenceRequest a;
  a.inputs = {Input("X", {1, 2}), Input("Y", {3})};
  const auto base = HashRequest("m", 1, 1, a);
  EXPECT_EQ(HashRequest("m", 1, 1, a), base);

  InferenceRequest reordered;
  reordered.inputs = {Input("Y", {3}), Input("X", {1, 2})};
  EXPECT_EQ(HashRequest("m", 1, 1, reordered), base) << "input order does not matter";

  EXPECT_NE(HashRequest("n", 1, 1, a), base);
  EXPECT_NE(HashRequest("m", 2, 1, a), base);
  EXPECT_NE(HashRequest("m", 1, 2, a), base);

  InferenceRequest data = a;
  data.inputs[0] = Input("X", {1, 2.5});
  EXPECT_NE(HashRequest("m", 1, 1, data), base);

  InferenceRequest shape = a;
  shape.inputs[0].shape = {1, 2};
  EXPECT_NE(HashRequest("m", 1, 1, shape), base);

  InferenceRequest dtype = a;
  dtype.inputs[0].dtype = DataType::kInt32;
  EXPECT_NE(HashRequest("m", 1, 1, dtype), base);

  InferenceRequest out = a;
  out.outputs = {{"Z", 0}};
  EXPECT_NE(HashRequest("m", 1, 1, out), base);
  InferenceRequest cls = a;
  cls.outputs = {{"Z", 2}};
  EXPECT_NE(HashRequest("m", 1, 1, cls), HashRequest("m", 1, 1, out));

  InferenceRequest param = a;
  param.parameters["temperature"] = 0.5;
  EXPECT_NE(HashRequest("m", 1, 1, param), base);
  InferenceRequest param_str = a;
  param_str.parameters["temperature"] = std::string("0.5");
  EXPECT_NE(HashRequest("m", 1, 1, param_str), HashRequest("m", 1, 1, param));

  // Scheduling fields are not part of the answer.
  InferenceRequest sched = a;
  sched.priority = 3;
  sched.timeout_us = 1000;
  sched.id = "other";
  EXPECT_EQ(HashRequest("m", 1, 1, sched), base);
}

TEST(CreateResponseCacheTest, ParsesTritonsSyntaxAndNamesEachMistake) {
  auto none = CreateResponseCache({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none.value(), nullptr);

  auto ok = CreateResponseCache({"local,size=4096"});
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok.value()->capacity(), 4096u);

  auto expect_error = [](std::vector<std::string> entries, const std::string& needle) {
    auto r = CreateResponseCache(entries);
    ASSERT_FALSE(r.ok()) << entries[0];
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  expect_error({"local"}, "missing the cache size");
  expect_error({"redis,host=x"}, "cache 'redis' is not supported");
  expect_error({"local,size=12ab"}, "size must be a positive whole number");
  expect_error({"local,size=0"}, "size must be a positive whole number");
  expect_error({"local,size=-5"}, "size must be a positive whole number");
  expect_error({"local,size=99999999999999999999"}, "size must be a positive whole number");
  expect_error({"local,size"}, "expected <cache>,<key>=<value>");
  expect_error({"local,color=red"}, "unknown setting 'color'");
  expect_error({"local,size=10", "redis,host=x"}, "only one cache");
}

}  // namespace
}  // namespace flowserve
