#pragma once
// Bounds on the shape of a request that every frontend enforces before any work
// proportional to them, so a small hostile body cannot cost quadratic time or deep recursion.
#include <cstddef>

namespace flowserve {

inline constexpr size_t kMaxRequestInputs = 1024;
inline constexpr size_t kMaxRequestOutputs = 1024;
inline constexpr size_t kMaxTensorRank = 64;
// Objects and arrays nested in a request JSON (a rank-64 tensor's nested 'data' fits).
inline constexpr int kMaxJsonDepth = 100;

}  // namespace flowserve
