#include "sim/verbs/world.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "sim/verbs/verbs_test_util.h"

namespace sim {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr int kAllAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

TEST(WorldTest, BuildsHostsWithNamedNicsAndTheirVerbs) {
  World world(3);
  NicSpec erdma;
  erdma.rate_bps = 100e9;
  const HostId a = world.AddHost("a", {"erdma_0", "erdma_1"}, erdma);
  const HostId b = world.AddHost("b", {"mlx5_0"});
  EXPECT_NE(a, b);
  EXPECT_EQ(world.verbs("a"), world.verbs(a));
  auto names = world.verbs(a)->ListDevices();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"erdma_0", "erdma_1"}));
  EXPECT_EQ(world.network().nic_spec(world.network().FindNic(a, "erdma_1")).rate_bps, 100e9);
  EXPECT_EQ(world.network().nic_spec(world.network().FindNic(b, "mlx5_0")).rate_bps, 200e9);
  world.sim().RunFor(5 * kMillisecond);
  EXPECT_EQ(world.clock()->NowNanos(), 5 * kMillisecond);
  EXPECT_EQ(world.sim().seed(), 3u);
}

// Two rails between two hosts, one QP each; one rail's NIC dies mid-batch. The healthy rail
// finishes everything; the dead one reports RETRY_EXC_ERR once and flushes the rest — what the
// RDMA transport must handle by retrying on the other rail.
TEST(WorldTest, OneRailDownLeavesTheOtherRailWorking) {
  World world(5);
  const HostId a = world.AddHost("a", {"erdma_0", "erdma_1"});
  const HostId b = world.AddHost("b", {"erdma_0", "erdma_1"});
  testing::RcEnd rail[2][2];
  std::vector<uint8_t> src(32 * kMiB), dst(32 * kMiB, 0);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 13 + 1);
  ibv_mr* smr[2];
  ibv_mr* dmr[2];
  for (int r = 0; r < 2; ++r) {
    const std::string nic = "erdma_" + std::to_string(r);
    rail[r][0] = testing::OpenEnd(world.verbs(a), nic);
    rail[r][1] = testing::OpenEnd(world.verbs(b), nic);
    ASSERT_TRUE(testing::Connect(rail[r][0], rail[r][1]).ok());
    // One MR per device, each with its own keys.
    smr[r] = *world.verbs(a)->RegMr(rail[r][0].pd, src.data(), src.size(), kAllAccess);
    dmr[r] = *world.verbs(b)->RegMr(rail[r][1].pd, dst.data(), dst.size(), kAllAccess);
  }
  EXPECT_NE(dmr[0]->rkey, dmr[1]->rkey);
  for (int i = 0; i < 8; ++i) {
    const int r = i % 2;
    ASSERT_EQ(testing::PostRdma(rail[r][0], IBV_WR_RDMA_WRITE, smr[r], src.data() + i * 4 * kMiB,
                                4 * kMiB, dmr[r], dst.data() + i * 4 * kMiB, i),
              0);
  }
  world.network().ScheduleNicDown(world.network().FindNic(a, "erdma_1"), 50 * kMicrosecond);
  std::vector<ibv_wc> healthy = testing::WaitForCompletions(world, rail[0][0], 4, kSecond);
  std::vector<ibv_wc> dead = testing::WaitForCompletions(world, rail[1][0], 4, kSecond);
  ASSERT_EQ(healthy.size(), 4u);
  ASSERT_EQ(dead.size(), 4u);
  for (const ibv_wc& wc : healthy) EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(dead[0].status, IBV_WC_RETRY_EXC_ERR);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(dead[i].status, IBV_WC_WR_FLUSH_ERR);
  for (int i = 0; i < 8; i += 2) {
    EXPECT_EQ(std::memcmp(dst.data() + i * 4 * kMiB, src.data() + i * 4 * kMiB, 4 * kMiB), 0);
  }
  // The healthy rail was not slowed by the dead one: 16 MiB at 200 Gbps plus latency.
  EXPECT_LT(world.sim().Now(), kSecond);
}

struct Summary {
  uint64_t hash;
  uint64_t events;
  std::vector<int> statuses;
};

// Random faults of every kind (NIC down, loss, latency, rate, host crash) over a multi-rail world.
Summary FaultyWorld(uint64_t seed) {
  World world(seed);
  const HostId a = world.AddHost("a", {"erdma_0", "erdma_1"});
  const HostId b = world.AddHost("b", {"erdma_0", "erdma_1"});
  RandomFaultOptions faults;
  faults.count = 6;
  faults.end = 20 * kMillisecond;
  faults.max_duration = 300 * kMillisecond;
  faults.weight_host_crash = 0.3;
  faults.hosts = {b};
  world.network().RandomFaults(faults);
  std::vector<uint8_t> src(8 * kMiB, 7), dst(8 * kMiB, 0);
  Summary out;
  testing::RcEnd ends[2][2];
  ibv_mr* smr[2];
  ibv_mr* dmr[2];
  for (int r = 0; r < 2; ++r) {
    const std::string nic = "erdma_" + std::to_string(r);
    ends[r][0] = testing::OpenEnd(world.verbs(a), nic);
    ends[r][1] = testing::OpenEnd(world.verbs(b), nic);
    EXPECT_TRUE(testing::Connect(ends[r][0], ends[r][1]).ok());
    smr[r] = *world.verbs(a)->RegMr(ends[r][0].pd, src.data(), src.size(), kAllAccess);
    dmr[r] = *world.verbs(b)->RegMr(ends[r][1].pd, dst.data(), dst.size(), kAllAccess);
  }
  for (int i = 0; i < 64; ++i) {
    const int r = i % 2;
    testing::PostRdma(ends[r][0], i % 3 ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ, smr[r],
                      src.data() + (i % 8) * kMiB, kMiB, dmr[r], dst.data() + (i % 8) * kMiB, i);
  }
  for (int r = 0; r < 2; ++r) {
    for (const ibv_wc& wc : testing::WaitForCompletions(world, ends[r][0], 32, 5 * kSecond)) {
      out.statuses.push_back(wc.status);
    }
  }
  EXPECT_EQ(out.statuses.size(), 64u) << "every request completes exactly once";
  out.hash = world.sim().trace_hash();
  out.events = world.sim().events_executed();
  return out;
}

TEST(WorldTest, SameSeedReplaysExactlyUnderRandomFaults) {
  for (uint64_t seed : {1, 2, 3, 4}) {
    const Summary first = FaultyWorld(seed), second = FaultyWorld(seed);
    EXPECT_EQ(first.hash, second.hash) << seed;
    EXPECT_EQ(first.events, second.events) << seed;
    EXPECT_EQ(first.statuses, second.statuses) << seed;
  }
  EXPECT_NE(FaultyWorld(1).hash, FaultyWorld(2).hash);
}

}  // namespace
}  // namespace sim
