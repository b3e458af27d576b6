#pragma once
// Where finished traces go: one writer thread serializes records and writes them, so a
// traced request pays only for its timestamps and a queue push. A TraceSession is one
// generation of trace settings (global, or one model's): it samples, counts and buffers;
// a settings change replaces it, and the replaced one flushes what it holds once its last
// traced request finished.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace flowserve {

struct RequestTrace;

// One trace_file path. Triton's layout: with log_frequency 0, every trace goes to the
// file itself (a JSON array, kept valid after each write); otherwise each batch of
// log_frequency traces goes to <file>.<index>, the index counting from 0 per path.
// Used by the writer thread only.
class TraceFile {
 public:
  explicit TraceFile(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  // `records`: comma-separated JSON objects.
  void AppendToMain(const std::string& records);
  void WriteIndexed(const std::string& records);

 private:
  std::string path_;
  bool main_started_ = false;
  uint64_t next_index_ = 0;
};

class TraceWriter {
 public:
  TraceWriter() = default;
  ~TraceWriter();
  // Writes everything queued and ends the thread; later posts are written inline. The
  // owner calls it: the last session may release this object on the writer thread.
  void Stop();
  void Post(std::shared_ptr<RequestTrace> trace);
  // Leftover records of a session that ended.
  void PostFlush(std::shared_ptr<TraceFile> file, std::string records, bool indexed);

 private:
  struct Job {
    std::shared_ptr<RequestTrace> trace;
    std::shared_ptr<TraceFile> file;
    std::string records;
    bool indexed = false;
  };
  void Push(Job job);
  void Run();
  static void Process(Job& job);

  std::mutex mu_;
  std::condition_variable cv_;
  // Swapped with the writer's own list on each round: both keep their capacity, so a
  // post allocates nothing once traffic is steady.
  std::vector<Job> queue_;
  bool stop_ = false;
  // The writer polls every kPollMs while traces keep coming, so a traced request never
  // pays for a wake-up; only a writer asleep without a deadline (nothing came for a
  // poll), or a long queue, is woken by a push.
  bool asleep_ = true;
  std::thread thread_;  // started by the first push
};

class TraceSession {
 public:
  TraceSession(std::shared_ptr<TraceWriter> writer, std::shared_ptr<TraceFile> file,
               bool timestamps, bool tensors, int64_t rate, int64_t count, int64_t log_frequency);
  ~TraceSession();

  bool tracing() const { return timestamps_ || tensors_; }
  bool timestamps() const { return timestamps_; }
  bool tensors() const { return tensors_; }
  // One request: true when it is to be traced (every rate-th, while the count lasts).
  // Callers serialize calls (the trace manager's lock).
  bool Sample();
  // Traces still to take; -1: no limit.
  int64_t remaining() const { return remaining_.load(std::memory_order_relaxed); }
  // A finished trace: queued for the writer.
  void Submit(std::shared_ptr<RequestTrace> trace);

  // The writer thread's side: buffers a serialized record and writes when due.
  void Collect(const RequestTrace& trace);

 private:
  std::shared_ptr<TraceWriter> writer_;
  std::shared_ptr<TraceFile> file_;
  const bool timestamps_, tensors_;
  const int64_t rate_, log_frequency_;
  uint64_t seen_ = 0;
  std::atomic<int64_t> remaining_;
  std::atomic<uint64_t> sampled_{0};
  // Writer thread only (and the destructor, which runs after the writer's last use).
  std::string buffer_;
  int64_t buffered_ = 0;
  uint64_t collected_ = 0;
  bool count_was_limited_;
};

}  // namespace flowserve
