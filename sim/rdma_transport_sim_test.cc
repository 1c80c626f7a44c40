// The production RdmaTransport on simulated NICs: striping efficiency, failover, access errors and
// determinism.
#include "gtest/gtest.h"
#include "sim/rdma_scenarios.h"

namespace sim {
namespace {

class StripingTest : public ::testing::TestWithParam<int> {};

TEST_P(StripingTest, LargeWritesReachNinetyFivePercentOfAggregateLineRate) {
  const int nics = GetParam();
  ScenarioResult r = StripingScenario(/*seed=*/1, nics, uint64_t{1} << 30, /*read=*/false);
  ASSERT_TRUE(r.ok) << r.report;
  EXPECT_GE(r.efficiency, 0.95) << r.report;
  std::printf("%s", r.report.c_str());
}

INSTANTIATE_TEST_SUITE_P(Nics, StripingTest, ::testing::Values(2, 4, 8));

TEST(StripingReadTest, LargeReadsStripeToo) {
  ScenarioResult r = StripingScenario(1, 2, uint64_t{1} << 30, /*read=*/true);
  ASSERT_TRUE(r.ok) << r.report;
  EXPECT_GE(r.efficiency, 0.95) << r.report;
}

TEST(FailoverTest, NicDownMidBatchEveryRequestCompletesAndTheRailComesBack) {
  ScenarioResult r = FailoverScenario(3);
  EXPECT_TRUE(r.ok) << r.report;
  std::printf("%s", r.report.c_str());
}

TEST(AccessErrorTest, StaleRkeyFailsOnlyThatRequestWithAClearError) {
  ScenarioResult r = AccessErrorScenario(4);
  EXPECT_TRUE(r.ok) << r.report;
}

TEST(DeterminismTest, SameSeedSameTraceDifferentSeedDifferentTrace) {
  ScenarioResult a = FuzzScenario(11), b = FuzzScenario(11), c = FuzzScenario(12);
  EXPECT_EQ(a.trace_hash, b.trace_hash);
  EXPECT_EQ(a.events, b.events);
  EXPECT_NE(a.trace_hash, c.trace_hash);
  ScenarioResult f1 = FailoverScenario(5), f2 = FailoverScenario(5);
  EXPECT_EQ(f1.trace_hash, f2.trace_hash);
}

}  // namespace
}  // namespace sim
