#include "sim/kernel/simulator.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sim {
namespace {

TEST(SimulatorTest, RunsEventsInTimeOrderAndTiesInSchedulingOrder) {
  Simulator sim(1);
  std::vector<std::string> order;
  sim.Schedule(30, "c", [&] { order.push_back("c@30"); });
  sim.Schedule(10, "a", [&] { order.push_back("a@10"); });
  sim.Schedule(20, "b1", [&] { order.push_back("b1@20"); });
  sim.Schedule(20, "b2", [&] { order.push_back("b2@20"); });
  sim.Schedule(20, "b3", [&] { order.push_back("b3@20"); });
  EXPECT_EQ(sim.RunUntilIdle(), 5u);
  EXPECT_EQ(order, (std::vector<std::string>{"a@10", "b1@20", "b2@20", "b3@20", "c@30"}));
  EXPECT_EQ(sim.Now(), 30);
}

TEST(SimulatorTest, EventsScheduledForNowRunAfterTheCurrentOnes) {
  Simulator sim(1);
  std::vector<int> order;
  sim.Schedule(5, "first", [&] {
    order.push_back(1);
    sim.Schedule(0, "nested", [&] { order.push_back(3); });
  });
  sim.Schedule(5, "second", [&] { order.push_back(2); });
  sim.RunUntilIdle();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(sim.Now(), 5);
}

TEST(SimulatorTest, RunUntilStopsAtTheDeadlineAndMovesTimeThere) {
  Simulator sim(1);
  int ran = 0;
  for (int i = 1; i <= 10; ++i) sim.Schedule(i * kMicrosecond, "tick", [&] { ++ran; });
  sim.RunUntil(5 * kMicrosecond);  // inclusive
  EXPECT_EQ(ran, 5);
  EXPECT_EQ(sim.Now(), 5 * kMicrosecond);
  sim.RunFor(kMicrosecond / 2);
  EXPECT_EQ(ran, 5);
  EXPECT_EQ(sim.Now(), 5 * kMicrosecond + kMicrosecond / 2);
  EXPECT_EQ(sim.pending_events(), 5u);
  sim.RunUntil(kSecond);
  EXPECT_EQ(ran, 10);
  EXPECT_EQ(sim.Now(), kSecond);
}

TEST(SimulatorTest, RunUntilPredicateStopsAsSoonAsItHolds) {
  Simulator sim(1);
  int count = 0;
  sim.ScheduleRepeating(kMillisecond, "count", [&] {
    ++count;
    return true;
  });
  EXPECT_TRUE(sim.RunUntil([&] { return count == 3; }, kSecond));
  EXPECT_EQ(sim.Now(), 3 * kMillisecond);
  // A predicate that never holds ends at the deadline with time moved there.
  EXPECT_FALSE(sim.RunUntil([] { return false; }, 10 * kMillisecond + 5));
  EXPECT_EQ(sim.Now(), 10 * kMillisecond + 5);
  EXPECT_EQ(count, 10);
}

TEST(SimulatorTest, RepeatingEventStopsWhenItReturnsFalse) {
  Simulator sim(1);
  int count = 0;
  sim.ScheduleRepeating(100, "r", [&] { return ++count < 4; });
  sim.RunUntilIdle();
  EXPECT_EQ(count, 4);
  EXPECT_EQ(sim.Now(), 400);
}

TEST(SimulatorTest, CancelledEventsDoNotRunOrCount) {
  Simulator sim(1);
  bool ran = false;
  EventId id = sim.Schedule(10, "cancel me", [&] { ran = true; });
  sim.Schedule(20, "other", [] {});
  EXPECT_TRUE(sim.Cancel(id));
  EXPECT_FALSE(sim.Cancel(id));
  EXPECT_EQ(sim.pending_events(), 1u);
  EXPECT_EQ(sim.RunUntilIdle(), 1u);
  EXPECT_FALSE(ran);
  EXPECT_EQ(sim.events_executed(), 1u);
  EXPECT_FALSE(sim.Cancel(EventId()));
}

TEST(SimulatorTest, CancelledSlotReuseDoesNotCancelTheNewEvent) {
  Simulator sim(1);
  int ran = 0;
  EventId old = sim.Schedule(10, "old", [&] { ran += 100; });
  ASSERT_TRUE(sim.Cancel(old));
  sim.Schedule(5, "new", [&] { ran += 1; });  // reuses the slot
  EXPECT_FALSE(sim.Cancel(old));
  sim.RunUntilIdle();
  EXPECT_EQ(ran, 1);
}

TEST(SimulatorTest, SimClockReadsVirtualTime) {
  Simulator sim(1);
  mooncake::Clock* clock = sim.clock();
  EXPECT_EQ(clock->NowNanos(), 0);
  sim.Schedule(3 * kMillisecond, "x", [] {});
  sim.RunUntilIdle();
  EXPECT_EQ(clock->NowNanos(), 3 * kMillisecond);
  EXPECT_EQ(clock->Now() - absl::UnixEpoch(), absl::Milliseconds(3));
}

TEST(SimulatorTest, AfterEventHookRunsAfterEveryEvent) {
  Simulator sim(1);
  int hooks = 0;
  sim.SetAfterEventHook([&] { ++hooks; });
  for (int i = 0; i < 7; ++i) sim.Schedule(i, "e", [] {});
  sim.RunUntilIdle();
  EXPECT_EQ(hooks, 7);
}

// A small random workload: events that schedule more events at random delays and trace values.
struct WorkloadResult {
  uint64_t hash;
  uint64_t events;
  SimTime end;
};
WorkloadResult RandomWorkload(uint64_t seed) {
  Simulator sim(seed);
  int remaining = 2000;
  std::function<void()> spawn = [&] {
    sim.Trace(sim.rng().Uniform(1000));
    if (--remaining <= 0) return;
    const int children = 1 + static_cast<int>(sim.rng().Uniform(2));
    for (int i = 0; i < children; ++i) {
      sim.Schedule(static_cast<SimTime>(sim.rng().Uniform(50)), "spawn", spawn);
    }
  };
  sim.Schedule(0, "root", spawn);
  sim.RunUntilIdle(100000);
  return WorkloadResult{sim.trace_hash(), sim.events_executed(), sim.Now()};
}

TEST(SimulatorTest, SameSeedSameTraceDifferentSeedDifferentTrace) {
  WorkloadResult a = RandomWorkload(42), b = RandomWorkload(42), c = RandomWorkload(43);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.end, b.end);
  EXPECT_NE(a.hash, c.hash);
}

TEST(SimulatorTest, TraceHashDependsOnLabelsTimesAndValues) {
  auto hash = [](const char* label, SimTime t, uint64_t v) {
    Simulator sim(1);
    sim.Schedule(t, label, [&sim, v] { sim.Trace(v); });
    sim.RunUntilIdle();
    return sim.trace_hash();
  };
  const uint64_t base = hash("a", 5, 1);
  EXPECT_EQ(base, hash("a", 5, 1));
  EXPECT_NE(base, hash("b", 5, 1));
  EXPECT_NE(base, hash("a", 6, 1));
  EXPECT_NE(base, hash("a", 5, 2));
}

TEST(SimulatorTest, ManyEventsAreFast) {
  // One million events must take well under a second (the network relies on cheap events).
  Simulator sim(1);
  uint64_t n = 0;
  std::function<void()> chain = [&] {
    if (++n < 1000000) sim.Schedule(1, "chain", chain);
  };
  sim.Schedule(0, "chain", chain);
  EXPECT_EQ(sim.RunUntilIdle(), 1000000u);
}

}  // namespace
}  // namespace sim
