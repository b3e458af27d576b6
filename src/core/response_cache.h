#pragma once
// Triton's response cache ("local" implementation): finished responses of models that
// enable `response_cache`, keyed by a 128-bit hash of the request, evicted least
// recently used first once their bytes exceed the capacity. Entries are immutable and
// shared: a hit hands out the same buffers to every answer, never a copy.
#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "core/inference_request.h"

namespace flowserve {

struct InferenceResponse;

struct ResponseCacheKey {
  uint64_t low = 0;
  uint64_t high = 0;
  bool operator==(const ResponseCacheKey& o) const { return low == o.low && high == o.high; }
};

// A response as the cache keeps it: every output's bytes in one buffer it owns.
struct CachedResponse {
  std::vector<Tensor> outputs;  // data points into `buffer`; owner is empty
  Parameters parameters;
  std::unique_ptr<char[]> buffer;
  size_t byte_size = 0;  // what the entry charges against the capacity
};

class ResponseCache {
 public:
  // Bookkeeping an entry costs beyond its tensor bytes, names and shapes (list and
  // index nodes, the tensor descriptors).
  static constexpr size_t kEntryOverhead = 256;

  explicit ResponseCache(uint64_t capacity_bytes);

  // The entry, now the most recently used; nullptr on a miss.
  std::shared_ptr<const CachedResponse> Lookup(const ResponseCacheKey& key);
  // Stores the entry, evicting the least recently used ones until it fits. False (and
  // nothing evicted) when the entry alone is larger than the whole cache. An entry
  // already under `key` (two identical requests missed at once) is replaced.
  bool Insert(const ResponseCacheKey& key, std::shared_ptr<const CachedResponse> response);

  // Time the callers spent hashing + looking up, and copying + inserting.
  void AddLookupTime(uint64_t ns) { lookup_ns_.fetch_add(ns, std::memory_order_relaxed); }
  void AddInsertTime(uint64_t ns) { insert_ns_.fetch_add(ns, std::memory_order_relaxed); }

  struct Counters {
    uint64_t capacity_bytes = 0;
    uint64_t used_bytes = 0;
    uint64_t entries = 0;
    uint64_t lookups = 0;
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
    uint64_t insertions = 0;
    uint64_t lookup_ns = 0;
    uint64_t insert_ns = 0;
  };
  Counters Read() const;
  uint64_t capacity() const { return capacity_; }

 private:
  struct KeyHash {
    size_t operator()(const ResponseCacheKey& k) const { return static_cast<size_t>(k.low); }
  };
  struct Entry {
    ResponseCacheKey key;
    std::shared_ptr<const CachedResponse> response;
  };

  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<ResponseCacheKey, std::list<Entry>::iterator, KeyHash> index_;
  uint64_t used_ = 0;
  uint64_t lookups_ = 0, hits_ = 0, evictions_ = 0, insertions_ = 0;
  std::atomic<uint64_t> lookup_ns_{0}, insert_ns_{0};
};

// What an entry for `response` would charge against the capacity: its output bytes,
// names, shapes and parameters plus kEntryOverhead.
size_t CachedResponseSize(const InferenceResponse& response);
// Copies a finished response's outputs and parameters into one immutable entry.
std::shared_ptr<const CachedResponse> MakeCachedResponse(const InferenceResponse& response);

// Builds the cache `--cache-config` entries ask for ("<cache>,<key>=<value>"; only the
// "local" cache, whose one setting is size=<bytes>). nullptr when there are none.
Result<std::shared_ptr<ResponseCache>> CreateResponseCache(const std::vector<std::string>& entries);

}  // namespace flowserve
