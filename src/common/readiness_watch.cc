#include "common/readiness_watch.h"

namespace flowserve {
namespace {
thread_local ReadinessWatch* t_watch = nullptr;
}  // namespace

ReadinessWatch* ThreadReadinessWatch() { return t_watch; }
void SetThreadReadinessWatch(ReadinessWatch* watch) { t_watch = watch; }

}  // namespace flowserve
