// Clock: the time seam. Production code reads time only through a Clock so that tests and the
// simulator can drive it (docs/architecture.md, "Layers and seams").
//
//   ManualClock clock;               // starts at 0
//   Lease lease(clock.Now() + absl::Seconds(10));
//   clock.Advance(absl::Seconds(11));  // the lease is now expired
#ifndef MOONCAKE_COMMON_CLOCK_H_
#define MOONCAKE_COMMON_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace mooncake {

// Clock gives monotonic time. Values are only meaningful relative to each other from one Clock.
// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;

  // NowNanos is monotonic time in nanoseconds.
  virtual int64_t NowNanos() const = 0;

  // Now is NowNanos as an absl::Time (offset from the Unix epoch; not wall-clock time).
  absl::Time Now() const { return absl::UnixEpoch() + absl::Nanoseconds(NowNanos()); }
};

// RealClock reads CLOCK_MONOTONIC.
class RealClock final : public Clock {
 public:
  int64_t NowNanos() const override;

  // Get returns the process-wide instance (never destroyed).
  static Clock* Get();
};

// ManualClock moves only when told to. Time never goes backwards.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_nanos = 0) : now_nanos_(start_nanos) {}

  int64_t NowNanos() const override { return now_nanos_.load(std::memory_order_acquire); }

  // Advance moves time forward by `d`; a negative `d` is ignored.
  void Advance(absl::Duration d);

  // AdvanceTo moves time to `nanos` if that is later than now.
  void AdvanceTo(int64_t nanos);

 private:
  std::atomic<int64_t> now_nanos_;
};

}  // namespace mooncake

#endif  // MOONCAKE_COMMON_CLOCK_H_
