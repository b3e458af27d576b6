#include "core/cached_inference.h"

#include "core/inference_response.h"
#include "core/model_version.h"
#include "core/request_hash.h"
#include "core/response_cache.h"
#include "model_config.pb.h"

namespace flowserve {
namespace {

void AnswerHit(ModelVersion& model, std::shared_ptr<const CachedResponse> hit,
               std::unique_ptr<InferenceRequest>& request, uint64_t lookup_start,
               ResponseCache& cache) {
  auto resp = std::make_unique<InferenceResponse>();
  resp->model_name = model.name();
  resp->model_version = model.version();
  resp->id = request->id;
  resp->parameters = hit->parameters;
  resp->outputs = hit->outputs;
  // Every answer shares the entry's buffer; it stays alive while any answer uses it,
  // even after an eviction.
  for (auto& t : resp->outputs) t.owner = hit;
  const uint64_t end = NowNs();
  cache.AddLookupTime(end - lookup_start);

  // Triton's semantics: a hit is a successful request (success and queue include it)
  // with cache_hit time, but no execution, no compute and no inference count.
  auto& stats = model.stats();
  const uint64_t arrival = request->arrival_ns ? request->arrival_ns : lookup_start;
  stats.cache_hit.Add(end - lookup_start);
  stats.success.Add(end - arrival);
  stats.queue.Add(0);
  stats.last_inference_ms.store(WallClockMs(), std::memory_order_relaxed);
  if (auto* b = LatencyHistogramBuckets(LatencyKind::kRequest)) {
    stats.request_histogram.Observe(end - arrival, *b);
  }
  auto cb = std::move(request->on_complete);
  request.reset();
  cb(std::move(resp));
}

}  // namespace

std::string ResponseCacheRefusal(const inference::ModelConfig& config, bool server_has_cache) {
  if (config.model_transaction_policy().decoupled()) {
    return "decoupled models are never cached (a request may have any number of responses)";
  }
  if (config.has_sequence_batching()) {
    return "sequence models are never cached (an answer depends on the sequence's state)";
  }
  if (!server_has_cache) {
    return "the server has no response cache (start it with --cache-config=local,size=<bytes>)";
  }
  return "";
}

Status EnqueueThroughCache(ModelVersion& model, ResponseCache& cache, uint64_t generation,
                           ModelExecutor& executor, std::unique_ptr<InferenceRequest>& request) {
  const uint64_t lookup_start = NowNs();
  const ResponseCacheKey key = HashRequest(model.name(), model.version(), generation, *request);
  if (auto hit = cache.Lookup(key)) {
    AnswerHit(model, std::move(hit), request, lookup_start, cache);
    return Status::Ok();
  }
  const uint64_t lookup_ns = NowNs() - lookup_start;
  cache.AddLookupTime(lookup_ns);

  // Held apart so that a refused request gets its own callback back.
  auto original = std::make_shared<ResponseCallback>(std::move(request->on_complete));
  request->on_complete = [model = &model, cache = &cache, key, lookup_ns,
                          original](std::unique_ptr<InferenceResponse> resp) {
    if (resp->status.ok()) {
      // Runs on the instance's thread before the frontend gets the response: the copy
      // is the price of the miss, as in Triton.
      const uint64_t start = NowNs();
      if (CachedResponseSize(*resp) <= cache->capacity()) {
        cache->Insert(key, MakeCachedResponse(*resp));
      }
      const uint64_t insert_ns = NowNs() - start;
      cache->AddInsertTime(insert_ns);
      model->stats().cache_miss.Add(lookup_ns + insert_ns);
    }
    (*original)(std::move(resp));
  };
  Status st = executor.Enqueue(request);
  if (!st.ok() && request) request->on_complete = std::move(*original);
  return st;
}

}  // namespace flowserve
