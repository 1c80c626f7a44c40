// The production RdmaTransport on simulated NICs: striping efficiency, failover, access errors and
// determinism.
#include <string.h>

#include "gtest/gtest.h"
#include "mooncake/transfer/transfer_batch.h"
#include "sim/rdma_cluster.h"
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

namespace sim {
namespace {

TEST(MemoryChunkingTest, RegistrationsAreSplitBelowTheMrLimitAndTransfersSpanChunks) {
  RdmaClusterOptions o;
  o.seed = 9;
  o.memory_per_host = 8 << 20;
  o.rdma.max_mr_chunk = 1 << 20;  // as if the NIC capped an MR at 1 MiB
  RdmaCluster c(o);
  ASSERT_TRUE(c.Init().ok());
  // One descriptor buffer per 1 MiB chunk, each with one rkey per NIC.
  ASSERT_EQ(c.descriptor(1)->buffers.size(), 8u);
  EXPECT_EQ(c.descriptor(1)->buffers[3].rkey.size(), 2u);
  for (int i = 0; i < (4 << 20); ++i) c.memory(0)[i] = static_cast<char>(i * 7 + 1);
  // 3 MiB starting mid-chunk: the slices are cut at chunk boundaries on both sides.
  auto batch = std::make_shared<mooncake::TransferBatch>(1);
  c.transport(0).Submit(batch, 0, /*write=*/true, c.addr(0, 512 << 10), c.addr(1, 1536 << 10),
                        3 << 20, c.descriptor(1));
  ASSERT_TRUE(c.RunUntilDone(*batch, kSecond));
  ASSERT_TRUE(batch->status(0).ok()) << batch->status(0);
  EXPECT_EQ(memcmp(c.memory(0) + (512 << 10), c.memory(1) + (1536 << 10), 3 << 20), 0);
}

}  // namespace
}  // namespace sim

namespace sim {
namespace {

// The rail handshake carries the sender's process instance, so a peer can tell it reached a later
// incarnation than the descriptor it holds; malformed handshakes are errors, not crashes.
TEST(EndpointInfoTest, RoundTripsThroughJsonWithItsInstance) {
  mooncake::EndpointInfo info;
  info.segment = "host0:15000";
  info.local_nic = "erdma_0";
  info.peer_nic = "erdma_1";
  info.lid = 7;
  info.psn = 42;
  info.qp_nums = {100, 101};
  info.instance = 0x1234567890abcdefULL;
  auto back = mooncake::ParseEndpointInfo(mooncake::EndpointInfoToJson(info));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->segment, info.segment);
  EXPECT_EQ(back->qp_nums, info.qp_nums);
  EXPECT_EQ(back->instance, info.instance);
  EXPECT_FALSE(mooncake::ParseEndpointInfo("{\"segment\": 3}").ok());
  EXPECT_FALSE(mooncake::ParseEndpointInfo("not json").ok());
}

}  // namespace
}  // namespace sim
