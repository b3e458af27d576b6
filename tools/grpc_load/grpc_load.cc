// grpc_load: keeps N ModelInfer calls in flight against one model and reports
// throughput and latency percentiles, like perf_analyzer's concurrency mode.
//
//   grpc_load --url=127.0.0.1:8001 --model=identity --concurrency=8 --duration=5
//             [--stream|--cq|--h2]
//
// Each of the N slots re-issues its call from the completion callback, so the number of
// outstanding requests stays exactly N without a thread per request. With --stream each
// slot is one ModelStreamInfer stream instead, writing its next request when the answer
// to the previous one arrives (the same N in flight, without a call per request). With
// --cq the unary calls are issued and completed by one thread on a completion queue
// instead of grpc's callback executor: about half the client CPU per call. With --h2 they
// go over one plain HTTP/2 connection driven by nghttp2 on one thread, with no grpc++ in
// the client at all (h2_unary_load.h).
#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "grpc_service.grpc.pb.h"
#include "h2_unary_load.h"

namespace {

struct Options {
  std::string url = "127.0.0.1:8001";
  std::string model = "identity";
  std::string input = "INPUT0";
  int concurrency = 1;
  int elements = 16;  // FP32 elements in the one input
  double warmup_s = 1.0;
  double duration_s = 5.0;
  bool stream = false;
  bool cq = false;  // unary calls on one completion queue driven by one thread
  bool h2 = false;  // unary calls over plain HTTP/2 by nghttp2 (h2_unary_load.h)
};

// CPU time (user + system) of this process so far, in microseconds.
double CpuUs() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
}

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool Flag(const char* arg, const char* name, std::string* value) {
  size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (Flag(argv[i], "--url", &v)) {
      o.url = v;
    } else if (Flag(argv[i], "--model", &v)) {
      o.model = v;
    } else if (Flag(argv[i], "--input", &v)) {
      o.input = v;
    } else if (Flag(argv[i], "--concurrency", &v)) {
      o.concurrency = std::max(1, std::atoi(v.c_str()));
    } else if (Flag(argv[i], "--elements", &v)) {
      o.elements = std::max(0, std::atoi(v.c_str()));
    } else if (Flag(argv[i], "--warmup", &v)) {
      o.warmup_s = std::atof(v.c_str());
    } else if (Flag(argv[i], "--duration", &v)) {
      o.duration_s = std::atof(v.c_str());
    } else if (std::strcmp(argv[i], "--stream") == 0) {
      o.stream = true;
    } else if (std::strcmp(argv[i], "--cq") == 0) {
      o.cq = true;
    } else if (std::strcmp(argv[i], "--h2") == 0) {
      o.h2 = true;
    } else {
      std::fprintf(
          stderr,
          "usage: %s [--url=host:port] [--model=name] [--input=INPUT0] "
          "[--concurrency=N] [--elements=N] [--warmup=s] [--duration=s] [--stream|--cq|--h2]\n",
          argv[0]);
      std::exit(2);
    }
  }
  return o;
}

// The one request every call sends: ELEMENTS FP32 counting up from 0.
inference::ModelInferRequest Request(const Options& o) {
  inference::ModelInferRequest request;
  request.set_model_name(o.model);
  auto* in = request.add_inputs();
  in->set_name(o.input);
  in->set_datatype("FP32");
  in->add_shape(o.elements);
  std::vector<float> data(o.elements);
  for (int i = 0; i < o.elements; ++i) data[i] = static_cast<float>(i);
  request.add_raw_input_contents()->assign(reinterpret_cast<const char*>(data.data()),
                                           data.size() * sizeof(float));
  return request;
}

class Load {
 public:
  Load(const Options& o, std::shared_ptr<grpc::Channel> channel)
      : stub_(inference::GRPCInferenceService::NewStub(channel)),
        stream_(o.stream),
        cq_mode_(o.cq && !o.stream),
        request_(Request(o)),
        slots_(o.concurrency) {
    for (auto& s : slots_) s.latencies_us.reserve(1 << 16);
  }

  void Start() {
    outstanding_ = static_cast<int>(slots_.size());
    for (auto& s : slots_) {
      if (stream_) {
        s.stream = std::make_unique<Stream>(this, &s);
      } else if (cq_mode_) {
        IssueCq(s);
      } else {
        Issue(s);
      }
    }
    if (cq_mode_) cq_thread_ = std::thread([this] { DriveCq(); });
  }
  void SetMeasuring(bool on) { measuring_.store(on); }
  // Stops re-issuing and waits for the calls in flight.
  void Stop() {
    stopping_.store(true);
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return outstanding_ == 0; });
    }
    if (cq_mode_) {
      cq_.Shutdown();
      cq_thread_.join();
    }
  }

  std::vector<uint32_t> Latencies() const {
    std::vector<uint32_t> all;
    for (const auto& s : slots_)
      all.insert(all.end(), s.latencies_us.begin(), s.latencies_us.end());
    return all;
  }
  uint64_t errors() const { return errors_.load(); }
  const std::string& first_error() const { return first_error_; }

 private:
  struct Stream;
  struct Slot {
    std::unique_ptr<grpc::ClientContext> context;
    inference::ModelInferResponse response;
    uint64_t start_ns = 0;
    std::vector<uint32_t> latencies_us;  // touched only by this slot's callbacks
    std::unique_ptr<Stream> stream;      // --stream only
    // --cq only
    std::unique_ptr<grpc::ClientAsyncResponseReader<inference::ModelInferResponse>> reader;
    grpc::Status status;
  };

  // One slot's ModelStreamInfer: one request written at a time, the next once the
  // answer to the previous one is read.
  struct Stream
      : grpc::ClientBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse> {
    Stream(Load* load, Slot* slot) : load_(load), slot_(slot) {
      load->stub_->async()->ModelStreamInfer(&context_, this);
      StartCall();
      Next();
    }
    void Next() {
      if (load_->stopping_.load()) {
        StartWritesDone();
        return;
      }
      slot_->start_ns = NowNs();
      pending_.store(2);  // the write and the read: one write may be outstanding at a time
      StartWrite(&load_->request_);
      StartRead(&answer_);
    }
    void OnWriteDone(bool ok) override {
      if (ok) Step();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;  // the stream ended; OnDone reports why
      grpc::Status status = answer_.error_message().empty()
                                ? grpc::Status::OK
                                : grpc::Status(grpc::StatusCode::UNKNOWN, answer_.error_message());
      load_->Record(*slot_, status);
      Step();
    }
    void Step() {
      if (pending_.fetch_sub(1) == 1) Next();
    }
    void OnDone(const grpc::Status& status) override {
      if (!status.ok()) load_->Record(*slot_, status);
      load_->SlotEnded();
    }

    Load* load_;
    Slot* slot_;
    grpc::ClientContext context_;
    inference::ModelStreamInferResponse answer_;
    std::atomic<int> pending_{0};
  };

  void SlotEnded() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--outstanding_ == 0) cv_.notify_all();
  }

  void Issue(Slot& s) {
    if (stopping_.load()) {
      SlotEnded();
      return;
    }
    s.context = std::make_unique<grpc::ClientContext>();
    s.start_ns = NowNs();
    stub_->async()->ModelInfer(s.context.get(), &request_, &s.response,
                               [this, &s](grpc::Status status) { Done(s, status); });
  }

  // --cq: the same calls without grpc's callback executor: this one thread issues every
  // call and takes every completion, so the client costs less CPU per call.
  void IssueCq(Slot& s) {
    s.context = std::make_unique<grpc::ClientContext>();
    s.start_ns = NowNs();
    s.reader = stub_->AsyncModelInfer(s.context.get(), request_, &cq_);
    s.reader->Finish(&s.response, &s.status, &s);
  }

  void DriveCq() {
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
      Slot& s = *static_cast<Slot*>(tag);
      Record(s, ok ? s.status : grpc::Status(grpc::StatusCode::UNKNOWN, "call failed"));
      if (stopping_.load()) {
        SlotEnded();
      } else {
        IssueCq(s);
      }
    }
  }

  void Done(Slot& s, const grpc::Status& status) {
    Record(s, status);
    Issue(s);
  }

  void Record(Slot& s, const grpc::Status& status) {
    uint64_t us = (NowNs() - s.start_ns) / 1000;
    if (!status.ok()) {
      if (errors_.fetch_add(1) == 0) {
        std::lock_guard<std::mutex> lock(mu_);
        first_error_ = status.error_message();
      }
    } else if (measuring_.load(std::memory_order_relaxed)) {
      s.latencies_us.push_back(static_cast<uint32_t>(std::min<uint64_t>(us, UINT32_MAX)));
    }
  }

  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
  bool stream_;
  bool cq_mode_;
  grpc::CompletionQueue cq_;
  std::thread cq_thread_;
  inference::ModelInferRequest request_;  // shared read-only by every call
  std::vector<Slot> slots_;
  std::atomic<bool> measuring_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> errors_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int outstanding_ = 0;
  std::string first_error_;
};

uint32_t Percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

// Warm-up, then the measured window: the calls completed in it, their latencies, and the
// client's own CPU per call (on a small machine shared with the server it can be what
// caps the throughput). Prints one line; the exit status says whether any call failed.
template <typename L>
int Measure(const Options& o, L& load, const char* mode) {
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup_s));
  load.SetMeasuring(true);
  uint64_t t0 = NowNs();
  const double cpu0 = CpuUs();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.duration_s));
  load.SetMeasuring(false);
  const double client_cpu = CpuUs() - cpu0;
  double seconds = static_cast<double>(NowNs() - t0) / 1e9;
  load.Stop();

  std::vector<uint32_t> lat = load.Latencies();
  if (load.errors() > 0) {
    std::fprintf(stderr, "grpc_load: %llu failed calls, first: %s\n",
                 static_cast<unsigned long long>(load.errors()), load.first_error().c_str());
  }
  double throughput = static_cast<double>(lat.size()) / seconds;
  uint32_t p50 = Percentile(lat, 0.50), p90 = Percentile(lat, 0.90), p99 = Percentile(lat, 0.99);
  std::printf(
      "mode=%s concurrency=%d requests=%zu throughput=%.1f p50_us=%u p90_us=%u p99_us=%u "
      "errors=%llu client_cpu_us=%.1f\n",
      mode, o.concurrency, lat.size(), throughput, p50, p90, p99,
      static_cast<unsigned long long>(load.errors()),
      lat.empty() ? 0.0 : client_cpu / static_cast<double>(lat.size()));
  return load.errors() > 0 ? 1 : 0;
}

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  if (o.h2) {
    const size_t colon = o.url.rfind(':');
    if (colon == std::string::npos) {
      std::fprintf(stderr, "grpc_load: --url must be host:port, not %s\n", o.url.c_str());
      return 2;
    }
    grpc_load::H2UnaryLoad load(o.url.substr(0, colon), std::atoi(o.url.c_str() + colon + 1),
                                Request(o).SerializeAsString(), o.concurrency);
    std::string error;
    if (!load.Start(&error)) {
      std::fprintf(stderr, "grpc_load: %s\n", error.c_str());
      return 1;
    }
    return Measure(o, load, "unary-h2");
  }
  // Debian's abseil keeps absl::Mutex's deadlock detector on (built without NDEBUG): a
  // global lock graph updated on every lock grpc takes, a few percent of this client's
  // CPU in `perf`, which shares the cores with the server it measures. Off, as the server.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(o.url, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::fprintf(stderr, "grpc_load: cannot connect to %s\n", o.url.c_str());
    return 1;
  }
  Load load(o, channel);
  load.Start();
  return Measure(o, load, o.stream ? "stream" : (o.cq ? "unary-cq" : "unary"));
}
