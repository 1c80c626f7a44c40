#include "mooncake/common/clock.h"

#include <thread>

#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(ClockTest, RealClockIsMonotonicAndMoves) {
  Clock* clock = RealClock::Get();
  int64_t a = clock->NowNanos();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  int64_t b = clock->NowNanos();
  EXPECT_GE(b - a, 1'000'000);
  EXPECT_EQ(RealClock::Get(), clock);
}

TEST(ClockTest, ManualClockMovesOnlyForward) {
  ManualClock clock(100);
  EXPECT_EQ(clock.NowNanos(), 100);
  clock.Advance(absl::Microseconds(5));
  EXPECT_EQ(clock.NowNanos(), 5100);
  clock.Advance(absl::Seconds(-1));
  EXPECT_EQ(clock.NowNanos(), 5100);
  clock.AdvanceTo(50);
  EXPECT_EQ(clock.NowNanos(), 5100);
  clock.AdvanceTo(9000);
  EXPECT_EQ(clock.NowNanos(), 9000);
  EXPECT_EQ(clock.Now() - absl::UnixEpoch(), absl::Nanoseconds(9000));
}

TEST(ClockTest, ManualClockIsSafeAcrossThreads) {
  ManualClock clock;
  std::thread t1([&] {
    for (int i = 0; i < 10000; ++i) clock.Advance(absl::Nanoseconds(1));
  });
  std::thread t2([&] {
    for (int i = 0; i < 10000; ++i) clock.Advance(absl::Nanoseconds(1));
  });
  t1.join();
  t2.join();
  EXPECT_EQ(clock.NowNanos(), 20000);
}

}  // namespace
}  // namespace mooncake
