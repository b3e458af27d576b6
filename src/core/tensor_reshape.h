#pragma once
// Triton's `reshape`: the model sees an input's reshape.shape where the client sent the
// input's dims, and the client gets an output's dims where the model produced the
// output's reshape.shape. Only the shape of the view changes; the bytes stay in place.
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace flowserve {

// `actual` is a tensor's shape whose part after the batch dim (when `batched`) matches
// `from`; returns it with that part replaced by `to`. A single -1 in `to` takes what the
// element count leaves; several take the values of the -1s of `from`, in order. The
// element count never changes.
Result<std::vector<int64_t>> ReshapeShape(const std::vector<int64_t>& actual, bool batched,
                                          std::span<const int64_t> from,
                                          std::span<const int64_t> to);

}  // namespace flowserve
