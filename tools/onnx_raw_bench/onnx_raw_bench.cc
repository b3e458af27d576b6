// The baseline for bench/onnx_vs_raw.sh: one session, one thread calling Run in a loop on
// a fixed FP32 input, opened exactly as the onnxruntime backend opens it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../raw_bench_loop.h"
#include "backends/backend_support.h"
#include "backends/onnxruntime/ort_options.h"
#include "backends/onnxruntime/ort_runtime.h"
#include "backends/onnxruntime/ort_session.h"

namespace {

namespace ort = flowserve::onnxruntime;

int Usage() {
  std::fprintf(stderr,
               "usage: onnx_raw_bench --model FILE --shape D1,D2,... [--batch N] [--seconds S]\n"
               "         [--threads T] [--no-optimize] [--session-entry KEY=VALUE]...\n"
               "  --shape is one item's shape (without the batch dim); the input is FP32\n");
  return 2;
}

int Run(int argc, char** argv) {
  std::string shape;
  int64_t batch = 1;
  double seconds = 3;
  ort::OrtOptions options;
  options.intra_op_threads = flowserve::UsableCores();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") {
      options.model_path = next();
    } else if (a == "--shape") {
      shape = next();
    } else if (a == "--batch") {
      batch = std::atoll(next().c_str());
    } else if (a == "--seconds") {
      seconds = std::atof(next().c_str());
    } else if (a == "--threads") {
      options.intra_op_threads = std::atoi(next().c_str());
    } else if (a == "--no-optimize") {
      options.graph_level = ort::GraphLevel::kDisableAll;
    } else if (a == "--session-entry") {
      std::string kv = next();
      size_t eq = kv.find('=');
      if (eq == std::string::npos) return Usage();
      options.session_entries[kv.substr(0, eq)] = kv.substr(eq + 1);
    } else {
      return Usage();
    }
  }
  if (options.model_path.empty() || shape.empty() || batch < 1 || options.intra_op_threads < 1)
    return Usage();

  if (auto st = ort::InitOrtApi(); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    return 1;
  }
  auto session = ort::OpenSession(options, nullptr);
  if (!session.ok()) {
    std::fprintf(stderr, "%s\n", session.status().message().c_str());
    return 1;
  }
  ort::SessionIo io = ort::ReadSessionIo(**session);
  if (io.inputs.size() != 1 || io.outputs.empty()) {
    std::fprintf(stderr, "%s: expected one input, got %zu\n", options.model_path.c_str(),
                 io.inputs.size());
    return 1;
  }

  std::vector<int64_t> dims = raw_bench::ParseShape(shape);
  dims.insert(dims.begin(), batch);
  size_t elements = 1;
  for (int64_t d : dims) elements *= static_cast<size_t>(d);
  std::vector<float> data(elements);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  for (auto& v : data) v = uniform(rng);
  auto memory = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
  Ort::Value input =
      Ort::Value::CreateTensor<float>(memory, data.data(), data.size(), dims.data(), dims.size());
  const char* in_name = io.inputs[0].name.c_str();
  std::vector<const char*> out_names;
  for (const auto& o : io.outputs) out_names.push_back(o.name.c_str());
  Ort::RunOptions run_options;
  auto run = [&] {
    return (*session)->Run(run_options, &in_name, &input, 1, out_names.data(), out_names.size());
  };

  // Warm-up: allocations, memory patterns.
  auto t = raw_bench::TimeLoop(seconds, 10, run);
  std::printf(
      "raw batch=%lld threads=%d iterations=%zu throughput=%.1f infer/s p50_ms=%.3f "
      "(ONNX Runtime %s, %s graph optimization)\n",
      static_cast<long long>(batch), options.intra_op_threads, t.iterations,
      t.iterations * batch / t.seconds, t.p50_ms, ort::OrtVersion().c_str(),
      ort::GraphLevelName(options.graph_level).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onnx_raw_bench: %s\n", e.what());
    return 1;
  }
}
