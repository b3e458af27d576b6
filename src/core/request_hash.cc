#include "core/request_hash.h"

#include <algorithm>
#include <variant>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace flowserve {
namespace {

class Hasher {
 public:
  Hasher() { XXH3_128bits_reset(&state_); }
  void Bytes(const void* data, size_t n) { XXH3_128bits_update(&state_, data, n); }
  template <typename T>
  void Value(const T& v) {
    Bytes(&v, sizeof(v));
  }
  // Length first, so that ("ab","c") and ("a","bc") differ.
  void String(const std::string& s) {
    Value<uint64_t>(s.size());
    Bytes(s.data(), s.size());
  }
  ResponseCacheKey Digest() {
    XXH128_hash_t h = XXH3_128bits_digest(&state_);
    return ResponseCacheKey{h.low64, h.high64};
  }

 private:
  XXH3_state_t state_;
};

}  // namespace

ResponseCacheKey HashRequest(const std::string& model_name, int64_t model_version,
                             uint64_t generation, const InferenceRequest& request) {
  Hasher h;
  h.String(model_name);
  h.Value(model_version);
  h.Value(generation);

  // Usually one or two inputs: sort pointers, not tensors.
  std::vector<const Tensor*> inputs;
  inputs.reserve(request.inputs.size());
  for (const auto& t : request.inputs) inputs.push_back(&t);
  std::sort(inputs.begin(), inputs.end(),
            [](const Tensor* a, const Tensor* b) { return a->name < b->name; });
  h.Value<uint64_t>(inputs.size());
  for (const Tensor* t : inputs) {
    h.String(t->name);
    h.Value(static_cast<int32_t>(t->dtype));
    h.Value<uint64_t>(t->shape.size());
    h.Bytes(t->shape.data(), t->shape.size() * sizeof(int64_t));
    h.Value<uint64_t>(t->byte_size);
    h.Bytes(t->data, t->byte_size);
  }

  h.Value<uint64_t>(request.outputs.size());
  for (const auto& o : request.outputs) {
    h.String(o.name);
    h.Value(o.classification);
  }

  h.Value<uint64_t>(request.parameters.size());  // a std::map: already in key order
  for (const auto& [key, value] : request.parameters) {
    h.String(key);
    h.Value<uint64_t>(value.index());
    std::visit(
        [&h](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, std::string>) {
            h.String(v);
          } else {
            h.Value(v);
          }
        },
        value);
  }
  return h.Digest();
}

}  // namespace flowserve
