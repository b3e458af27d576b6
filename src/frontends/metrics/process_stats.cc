#include "frontends/metrics/process_stats.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "core/inference_request.h"

namespace flowserve {
namespace {

// A "Key:   123 kB" line of /proc/meminfo, in bytes.
uint64_t MeminfoBytes(const std::string& text, const char* key) {
  auto pos = text.find(key);
  if (pos == std::string::npos) return 0;
  return std::strtoull(text.c_str() + pos + std::strlen(key), nullptr, 10) * 1024;
}

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

ProcessStatsSampler::ProcessStatsSampler(int interval_ms)
    : interval_ns_(static_cast<uint64_t>(interval_ms > 0 ? interval_ms : 1) * 1000000),
      last_(ReadCpuTicks()),
      last_ns_(NowNs()) {}

ProcessStatsSampler::CpuTicks ProcessStatsSampler::ReadCpuTicks() {
  CpuTicks t;
  FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return t;
  // cpu user nice system idle iowait irq softirq steal ...
  unsigned long long v[8] = {};
  if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                  &v[4], &v[5], &v[6], &v[7]) >= 4) {
    for (auto x : v) t.total += x;
    t.busy = t.total - v[3] - v[4];
  }
  std::fclose(f);
  return t;
}

ProcessStats ProcessStatsSampler::Sample() {
  ProcessStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t now = NowNs();
    if (now - last_ns_ >= interval_ns_) {
      CpuTicks cur = ReadCpuTicks();
      if (cur.total > last_.total) {
        utilization_ = static_cast<double>(cur.busy - last_.busy) / (cur.total - last_.total);
      }
      last_ = cur;
      last_ns_ = now;
    }
    s.cpu_utilization = utilization_;
  }
  std::string meminfo = ReadFile("/proc/meminfo");
  s.memory_total_bytes = MeminfoBytes(meminfo, "MemTotal:");
  uint64_t available = MeminfoBytes(meminfo, "MemAvailable:");
  s.memory_used_bytes = s.memory_total_bytes > available ? s.memory_total_bytes - available : 0;

  const long page = sysconf(_SC_PAGESIZE);
  unsigned long long vm_pages = 0, rss_pages = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%llu %llu", &vm_pages, &rss_pages) == 2) {
      s.process_virtual_bytes = vm_pages * page;
      s.process_resident_bytes = rss_pages * page;
    }
    std::fclose(f);
  }
  // Fields 14 and 15 of /proc/self/stat; the command name (field 2) may hold spaces,
  // so count from its closing parenthesis.
  std::string stat = ReadFile("/proc/self/stat");
  auto paren = stat.rfind(')');
  if (paren != std::string::npos) {
    std::istringstream in(stat.substr(paren + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
      if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
      if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    s.process_cpu_seconds = static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
  }
  return s;
}

}  // namespace flowserve
