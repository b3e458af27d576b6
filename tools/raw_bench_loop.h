#pragma once
// What the raw framework baselines (torch_raw_bench, onnx_raw_bench) share: the --shape
// argument and the timed loop, so both measure the same way.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace raw_bench {

// "3,224,224" -> {3, 224, 224}
inline std::vector<int64_t> ParseShape(const std::string& s) {
  std::vector<int64_t> dims;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    dims.push_back(std::stoll(s.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return dims;
}

struct Timing {
  size_t iterations = 0;
  double seconds = 0;
  double p50_ms = 0;
};

// Calls run() `warmup` times, then as often as fits in `seconds`, timing each call.
template <typename Run>
Timing TimeLoop(double seconds, int warmup, Run&& run) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) run();
  std::vector<double> latencies;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  for (;;) {
    const auto t0 = Clock::now();
    if (t0 >= deadline) break;
    run();
    latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  Timing t;
  t.iterations = latencies.size();
  t.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  t.p50_ms = latencies.empty() ? 0 : latencies[latencies.size() / 2];
  return t;
}

}  // namespace raw_bench
