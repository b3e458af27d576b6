#include "core/response_cache.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <variant>

#include "core/inference_response.h"

namespace flowserve {

ResponseCache::ResponseCache(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

std::shared_ptr<const CachedResponse> ResponseCache::Lookup(const ResponseCacheKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  ++lookups_;
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->response;
}

bool ResponseCache::Insert(const ResponseCacheKey& key,
                           std::shared_ptr<const CachedResponse> response) {
  const uint64_t size = response->byte_size;
  if (size > capacity_) return false;
  // The entry replaced and the ones evicted are released after the lock: the last
  // reference may free a large buffer.
  std::vector<std::shared_ptr<const CachedResponse>> released;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it != index_.end()) {
    used_ -= it->second->response->byte_size;
    released.push_back(std::move(it->second->response));
    lru_.erase(it->second);
    index_.erase(it);
  }
  while (used_ + size > capacity_ && !lru_.empty()) {
    Entry& victim = lru_.back();
    used_ -= victim.response->byte_size;
    index_.erase(victim.key);
    released.push_back(std::move(victim.response));
    lru_.pop_back();
    ++evictions_;
  }
  lru_.push_front(Entry{key, std::move(response)});
  index_.emplace(key, lru_.begin());
  used_ += size;
  ++insertions_;
  return true;
}

ResponseCache::Counters ResponseCache::Read() const {
  Counters c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    c.capacity_bytes = capacity_;
    c.used_bytes = used_;
    c.entries = index_.size();
    c.lookups = lookups_;
    c.hits = hits_;
    c.misses = lookups_ - hits_;
    c.evictions = evictions_;
    c.insertions = insertions_;
  }
  c.lookup_ns = lookup_ns_.load(std::memory_order_relaxed);
  c.insert_ns = insert_ns_.load(std::memory_order_relaxed);
  return c;
}

size_t CachedResponseSize(const InferenceResponse& response) {
  size_t bytes = ResponseCache::kEntryOverhead;
  for (const auto& t : response.outputs) {
    bytes += t.byte_size + sizeof(Tensor) + t.name.size() + t.shape.size() * sizeof(int64_t);
  }
  for (const auto& [name, value] : response.parameters) {
    bytes += name.size() + sizeof(ParameterValue);
    if (auto* s = std::get_if<std::string>(&value)) bytes += s->size();
  }
  return bytes;
}

std::shared_ptr<const CachedResponse> MakeCachedResponse(const InferenceResponse& response) {
  auto entry = std::make_shared<CachedResponse>();
  size_t data_bytes = 0;
  for (const auto& t : response.outputs) data_bytes += t.byte_size;
  entry->buffer.reset(new char[std::max<size_t>(1, data_bytes)]);
  size_t offset = 0;
  entry->outputs.reserve(response.outputs.size());
  for (const auto& t : response.outputs) {
    Tensor copy;
    copy.name = t.name;
    copy.dtype = t.dtype;
    copy.shape = t.shape;
    copy.byte_size = t.byte_size;
    if (t.byte_size > 0) std::memcpy(entry->buffer.get() + offset, t.data, t.byte_size);
    copy.data = entry->buffer.get() + offset;
    offset += t.byte_size;
    entry->outputs.push_back(std::move(copy));
  }
  entry->parameters = response.parameters;
  entry->byte_size = CachedResponseSize(response);
  return entry;
}

Result<std::shared_ptr<ResponseCache>> CreateResponseCache(
    const std::vector<std::string>& entries) {
  if (entries.empty()) return std::shared_ptr<ResponseCache>();
  // Triton's form: --cache-config=<cache>,<key>=<value>, repeatable for more settings.
  std::map<std::string, std::map<std::string, std::string>> caches;
  for (const auto& entry : entries) {
    const auto comma = entry.find(',');
    auto& settings = caches[entry.substr(0, comma)];  // "local" alone: a cache, no settings
    if (comma == std::string::npos) continue;
    const auto eq = entry.find('=', comma);
    if (comma == 0 || eq == std::string::npos || eq == comma + 1) {
      return InvalidArgument("--cache-config=" + entry +
                             ": expected <cache>,<key>=<value>, e.g. "
                             "--cache-config=local,size=1048576");
    }
    settings[entry.substr(comma + 1, eq - comma - 1)] = entry.substr(eq + 1);
  }
  if (caches.size() > 1) {
    return InvalidArgument("--cache-config names " + std::to_string(caches.size()) +
                           " caches; only one cache can be configured ('local')");
  }
  const auto& [name, settings] = *caches.begin();
  if (name != "local") {
    return InvalidArgument("--cache-config: cache '" + name +
                           "' is not supported; the only cache is 'local' "
                           "(--cache-config=local,size=<bytes>)");
  }
  for (const auto& [key, value] : settings) {
    if (key != "size") {
      return InvalidArgument("--cache-config=local: unknown setting '" + key +
                             "'; the local cache has only size=<bytes>");
    }
  }
  auto size = settings.find("size");
  if (size == settings.end()) {
    return InvalidArgument(
        "--cache-config=local: missing the cache size; use --cache-config=local,size=<bytes>");
  }
  const std::string& text = size->second;
  uint64_t bytes = 0;
  bool ok = !text.empty() && text.size() <= 19;
  for (char c : text) ok = ok && c >= '0' && c <= '9';
  if (ok) bytes = std::stoull(text);
  if (!ok || bytes == 0) {
    return InvalidArgument("--cache-config=local,size=" + text +
                           ": size must be a positive whole number of bytes");
  }
  return std::make_shared<ResponseCache>(bytes);
}

}  // namespace flowserve
