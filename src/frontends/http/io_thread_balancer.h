#pragma once
// How many of a listener's I/O threads take connections. One, until it is busy and the
// machine has an idle core for another: on a small machine that also runs the clients, a
// second busy event loop only takes turns with them on the same cores (more context
// switches and a longer tail for no more throughput); on a big one the threads join in as
// load grows, and leave again when it falls.
#include <time.h>

#include <atomic>
#include <cstdint>
#include <vector>

namespace flowserve {

class IoThreadBalancer {
 public:
  struct Policy {
    // A thread busier than this (CPU time over wall time) asks for help...
    double busy_to_grow = 0.7;
    // ...if the machine shows this much idle CPU (in cores) for another event loop.
    double idle_cores_to_grow = 0.8;
    // The active threads give one up when the rest could carry their load at this busy
    // fraction, for quiet_ticks_to_shrink ticks in a row: slow to leave, quick to join.
    double busy_after_shrink = 0.4;
    int quiet_ticks_to_shrink = 10;
  };

  // What one tick saw of the active threads and the machine.
  struct Sample {
    double busiest = 0;     // the busiest active thread
    double total_busy = 0;  // summed over the active threads
    double idle_cores = 0;  // the machine's
  };

  IoThreadBalancer(int threads, Policy policy);

  // The CPU clock of each I/O thread (pthread_getcpuclockid), once they run.
  void SetThreadClocks(std::vector<clockid_t> clocks);

  // Measures the load since the last call (made every tick from one thread) and moves
  // the active count by at most one. Returns the active count.
  int Tick();

  int active() const { return active_.load(std::memory_order_relaxed); }

  // The rule alone: the next active count. `quiet_ticks` carries over between calls.
  static int Decide(const Policy& policy, int threads, int active, const Sample& sample,
                    int& quiet_ticks);

 private:
  const int threads_;
  const int cpus_;
  const Policy policy_;
  std::atomic<int> active_{1};
  std::vector<clockid_t> clocks_;
  std::vector<int64_t> last_cpu_ns_;
  int64_t last_wall_ns_ = 0;
  uint64_t last_machine_total_ = 0;  // jiffies, from /proc/stat
  uint64_t last_machine_idle_ = 0;
  int quiet_ticks_ = 0;
};

}  // namespace flowserve
