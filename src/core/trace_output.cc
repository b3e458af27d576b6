#include "core/trace_output.h"

#include <chrono>
#include <cstdio>
#include <string_view>

#include "common/logging.h"
#include "core/request_trace.h"

namespace flowserve {
namespace {

constexpr int kPollMs = 20;
constexpr size_t kWakeAtQueued = 4096;

bool Put(FILE* f, std::string_view text) {
  return std::fwrite(text.data(), 1, text.size(), f) == text.size();
}

// `records` as one JSON array, without copying them into a bracketed string first.
bool WriteArray(const std::string& path, const std::string& records) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = Put(f, "[") && Put(f, records) && Put(f, "]");
  return std::fclose(f) == 0 && ok;
}

}  // namespace

void TraceFile::AppendToMain(const std::string& records) {
  if (records.empty()) return;
  bool ok;
  if (!main_started_) {
    ok = WriteArray(path_, records);
    main_started_ = ok;
  } else {
    // Replace the closing bracket so the file stays one valid array between writes.
    FILE* f = std::fopen(path_.c_str(), "r+b");
    ok = f != nullptr && std::fseek(f, -1, SEEK_END) == 0;
    if (ok) ok = Put(f, ",") && Put(f, records) && Put(f, "]");
    if (f != nullptr && std::fclose(f) != 0) ok = false;
  }
  if (!ok) FS_LOG_ERROR("trace: cannot write trace file '{}'", path_);
}

void TraceFile::WriteIndexed(const std::string& records) {
  if (records.empty()) return;
  const std::string path = path_ + "." + std::to_string(next_index_++);
  if (!WriteArray(path, records)) {
    FS_LOG_ERROR("trace: cannot write trace file '{}'", path);
  }
}

TraceWriter::~TraceWriter() {
  if (thread_.joinable() && thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();  // released by its own job: cannot join itself
  } else {
    Stop();
  }
}

void TraceWriter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void TraceWriter::Post(std::shared_ptr<RequestTrace> trace) {
  Job job;
  job.trace = std::move(trace);
  Push(std::move(job));
}

void TraceWriter::PostFlush(std::shared_ptr<TraceFile> file, std::string records, bool indexed) {
  Job job;
  job.file = std::move(file);
  job.records = std::move(records);
  job.indexed = indexed;
  Push(std::move(job));
}

void TraceWriter::Push(Job job) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      // Only a session released after the server stopped gets here: write it now.
      Process(job);
      return;
    }
    queue_.push_back(std::move(job));
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
    wake = asleep_ || queue_.size() == kWakeAtQueued;
    if (wake) asleep_ = false;
  }
  if (wake) cv_.notify_one();
}

void TraceWriter::Run() {
  std::vector<Job> jobs;
  std::unique_lock<std::mutex> lock(mu_);
  bool polled_empty = false;
  for (;;) {
    if (queue_.empty()) {
      if (stop_) return;
      // Work in the last poll: poll again. None: sleep until a push wakes this thread.
      if (polled_empty) {
        asleep_ = true;
        cv_.wait(lock);
        asleep_ = false;
        polled_empty = false;
      } else {
        cv_.wait_for(lock, std::chrono::milliseconds(kPollMs));
        polled_empty = queue_.empty();
      }
      continue;
    }
    jobs.swap(queue_);
    lock.unlock();
    // Releasing a job may end a session, which pushes its flush: done unlocked.
    for (auto& job : jobs) Process(job);
    jobs.clear();
    lock.lock();
  }
}

void TraceWriter::Process(Job& job) {
  if (job.trace) {
    job.trace->session->Collect(*job.trace);
  } else if (job.file) {
    if (job.indexed) {
      job.file->WriteIndexed(job.records);
    } else {
      job.file->AppendToMain(job.records);
    }
  }
}

TraceSession::TraceSession(std::shared_ptr<TraceWriter> writer, std::shared_ptr<TraceFile> file,
                           bool timestamps, bool tensors, int64_t rate, int64_t count,
                           int64_t log_frequency)
    : writer_(std::move(writer)),
      file_(std::move(file)),
      timestamps_(timestamps),
      tensors_(tensors),
      rate_(rate < 1 ? 1 : rate),
      log_frequency_(log_frequency),
      remaining_(count),
      count_was_limited_(count >= 0) {}

TraceSession::~TraceSession() {
  if (buffered_ > 0 && file_) {
    // Triton: with log_frequency (or a spent trace_count) the rest goes to the next
    // indexed file; otherwise to the file itself.
    const bool spent = count_was_limited_ && remaining_.load(std::memory_order_acquire) == 0;
    writer_->PostFlush(file_, std::move(buffer_), log_frequency_ > 0 || spent);
  }
}

bool TraceSession::Sample() {
  if (!tracing()) return false;
  const int64_t left = remaining_.load(std::memory_order_relaxed);
  if (left == 0) return false;
  if (++seen_ % static_cast<uint64_t>(rate_) != 0) return false;
  // sampled_ first: the writer that sees the count spent (acquire) sees every sample.
  sampled_.fetch_add(1, std::memory_order_relaxed);
  if (left > 0) remaining_.store(left - 1, std::memory_order_release);
  return true;
}

void TraceSession::Submit(std::shared_ptr<RequestTrace> trace) { writer_->Post(std::move(trace)); }

void TraceSession::Collect(const RequestTrace& trace) {
  if (!file_) return;
  if (buffered_ > 0) buffer_ += ',';
  AppendTraceJson(trace, buffer_);
  ++buffered_;
  if (trace.parent_id == 0) ++collected_;  // ensemble steps are not sampled, their parent is
  // Every trace a spent trace_count allowed is in: write them, as Triton does, to the
  // next indexed file whatever log_frequency says.
  const bool count_done = count_was_limited_ && remaining_.load(std::memory_order_acquire) == 0 &&
                          collected_ == sampled_.load(std::memory_order_relaxed);
  if ((log_frequency_ > 0 && buffered_ >= log_frequency_) || count_done) {
    file_->WriteIndexed(buffer_);
    buffer_.clear();
    buffered_ = 0;
  }
}

}  // namespace flowserve
