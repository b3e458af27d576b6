#include "common/adaptive_spin.h"

#include <sched.h>
#include <sys/resource.h>

namespace flowserve {

void YieldCpu() { sched_yield(); }

int64_t InvoluntarySwitches() {
  rusage usage{};
  if (getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
  return usage.ru_nivcsw;
}

}  // namespace flowserve
