// The baseline for bench/pytorch_vs_raw.sh: one module, one thread calling forward in a
// loop on a fixed input, prepared exactly as the pytorch backend prepares it.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../raw_bench_loop.h"
#include "backends/backend_support.h"
#include "backends/pytorch/pytorch_options.h"
#include "backends/pytorch/torch_module.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: torch_raw_bench --model FILE --shape D1,D2,... [--batch N] "
               "[--seconds S] [--threads T] [--no-optimize]\n"
               "  --shape is one item's shape (without the batch dim)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, shape;
  int64_t batch = 1;
  double seconds = 3;
  int threads = flowserve::UsableCores();
  bool optimize = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model")
      model = next();
    else if (a == "--shape")
      shape = next();
    else if (a == "--batch")
      batch = std::atoll(next().c_str());
    else if (a == "--seconds")
      seconds = std::atof(next().c_str());
    else if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--no-optimize")
      optimize = false;
    else
      return Usage();
  }
  if (model.empty() || shape.empty() || batch < 1 || threads < 1) return Usage();

  at::internal::lazy_init_num_threads();
  at::set_num_threads(threads);
  auto loaded = flowserve::pytorch::LoadTorchModule(model, optimize);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().message().c_str());
    return 1;
  }
  std::vector<int64_t> dims = raw_bench::ParseShape(shape);
  dims.insert(dims.begin(), batch);
  c10::InferenceMode guard;
  at::Tensor input = at::rand(dims);
  auto& module = loaded->module;

  // Warm-up: profiling runs, allocations.
  auto t = raw_bench::TimeLoop(seconds, 20, [&] { module.forward({input}); });
  std::printf("raw batch=%lld threads=%d iterations=%zu throughput=%.1f infer/s p50_ms=%.3f (%s)\n",
              static_cast<long long>(batch), threads, t.iterations,
              t.iterations * batch / t.seconds, t.p50_ms, loaded->optimization.c_str());
  return 0;
}
