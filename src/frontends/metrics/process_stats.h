#pragma once
// CPU and memory figures from /proc, for the metrics endpoint. Utilization needs two
// readings: it is measured between scrapes at least --metrics-interval-ms apart, so no
// thread has to wake up while nobody is scraping.
#include <cstdint>
#include <mutex>

namespace flowserve {

struct ProcessStats {
  double cpu_utilization = 0;  // whole machine, 0..1, over the last interval
  uint64_t memory_total_bytes = 0;
  uint64_t memory_used_bytes = 0;  // MemTotal - MemAvailable
  double process_cpu_seconds = 0;  // user + system time of this process
  uint64_t process_resident_bytes = 0;
  uint64_t process_virtual_bytes = 0;
};

class ProcessStatsSampler {
 public:
  explicit ProcessStatsSampler(int interval_ms);
  ProcessStats Sample();

 private:
  struct CpuTicks {
    uint64_t busy = 0, total = 0;
  };
  static CpuTicks ReadCpuTicks();

  const uint64_t interval_ns_;
  std::mutex mu_;
  CpuTicks last_;
  uint64_t last_ns_ = 0;
  double utilization_ = 0;
};

}  // namespace flowserve
