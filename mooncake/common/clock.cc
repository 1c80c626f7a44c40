#include "mooncake/common/clock.h"

#include <time.h>

namespace mooncake {

int64_t RealClock::NowNanos() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

Clock* RealClock::Get() {
  static RealClock* clock = new RealClock();
  return clock;
}

void ManualClock::Advance(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return;
  now_nanos_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_acq_rel);
}

void ManualClock::AdvanceTo(int64_t nanos) {
  int64_t cur = now_nanos_.load(std::memory_order_acquire);
  while (nanos > cur && !now_nanos_.compare_exchange_weak(cur, nanos, std::memory_order_acq_rel)) {
  }
}

}  // namespace mooncake
