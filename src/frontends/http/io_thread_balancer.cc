#include "frontends/http/io_thread_balancer.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace flowserve {
namespace {

int64_t NowNs(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return 0;
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Machine-wide CPU time in jiffies, all of it and the idle part (idle + iowait).
bool ReadMachineTimes(uint64_t& total, uint64_t& idle) {
  FILE* f = std::fopen("/proc/stat", "re");
  if (f == nullptr) return false;
  // The first line sums every CPU: user nice system idle iowait irq softirq steal.
  unsigned long long v[8] = {};
  const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                            &v[3], &v[4], &v[5], &v[6], &v[7]);
  std::fclose(f);
  if (n < 4) return false;
  total = 0;
  for (int i = 0; i < n; ++i) total += v[i];
  idle = v[3] + (n > 4 ? v[4] : 0);
  return true;
}

}  // namespace

IoThreadBalancer::IoThreadBalancer(int threads, Policy policy)
    : threads_(std::max(threads, 1)),
      cpus_(static_cast<int>(std::max<long>(sysconf(_SC_NPROCESSORS_ONLN), 1))),
      policy_(policy) {}

void IoThreadBalancer::SetThreadClocks(std::vector<clockid_t> clocks) {
  clocks_ = std::move(clocks);
  last_cpu_ns_.assign(clocks_.size(), 0);
  for (size_t i = 0; i < clocks_.size(); ++i) last_cpu_ns_[i] = NowNs(clocks_[i]);
  last_wall_ns_ = NowNs(CLOCK_MONOTONIC);
  ReadMachineTimes(last_machine_total_, last_machine_idle_);
}

int IoThreadBalancer::Tick() {
  const int active = active_.load(std::memory_order_relaxed);
  if (threads_ == 1 || clocks_.size() != static_cast<size_t>(threads_)) return active;
  const int64_t wall = NowNs(CLOCK_MONOTONIC);
  const double span = static_cast<double>(wall - last_wall_ns_);
  last_wall_ns_ = wall;
  Sample sample;
  for (int i = 0; i < threads_; ++i) {
    const int64_t cpu = NowNs(clocks_[i]);
    const double busy = span > 0 ? static_cast<double>(cpu - last_cpu_ns_[i]) / span : 0;
    last_cpu_ns_[i] = cpu;
    if (i < active) {
      sample.busiest = std::max(sample.busiest, busy);
      sample.total_busy += busy;
    }
  }
  uint64_t total = 0, idle = 0;
  if (ReadMachineTimes(total, idle) && total > last_machine_total_) {
    sample.idle_cores = cpus_ * static_cast<double>(idle - last_machine_idle_) /
                        static_cast<double>(total - last_machine_total_);
    last_machine_total_ = total;
    last_machine_idle_ = idle;
  }
  const int next = Decide(policy_, threads_, active, sample, quiet_ticks_);
  active_.store(next, std::memory_order_relaxed);
  return next;
}

int IoThreadBalancer::Decide(const Policy& policy, int threads, int active, const Sample& sample,
                             int& quiet_ticks) {
  if (active < threads && sample.busiest > policy.busy_to_grow &&
      sample.idle_cores > policy.idle_cores_to_grow) {
    quiet_ticks = 0;
    return active + 1;
  }
  if (active > 1 && sample.total_busy < policy.busy_after_shrink * (active - 1)) {
    if (++quiet_ticks < policy.quiet_ticks_to_shrink) return active;
    quiet_ticks = 0;
    return active - 1;
  }
  quiet_ticks = 0;
  return active;
}

}  // namespace flowserve
