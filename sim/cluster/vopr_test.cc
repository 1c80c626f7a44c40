// The bounded VOPR: a few hundred seeds of the whole store under faults with zero violations, a
// planted bug that the invariants must catch, replays that are identical, and the regression
// seeds. The seeds run in blocks (one test each) so Bazel's shards share them. MC_VOPR_SEEDS
// overrides the count (the manual vopr_long_test runs thousands).
#include "sim/cluster/vopr.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "mooncake/common/logging.h"

namespace sim {
namespace {

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::strtoull(v, nullptr, 10) : fallback;
}

class VoprTest : public ::testing::Test {
 protected:
  void SetUp() override { mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR); }
};

constexpr int kBlocks = 4;

class VoprSeedsTest : public VoprTest, public ::testing::WithParamInterface<int> {};

TEST_P(VoprSeedsTest, HoldEveryInvariant) {
  const uint64_t seeds = EnvOr("MC_VOPR_SEEDS", 200);
  const uint64_t per_block = (seeds + kBlocks - 1) / kBlocks;
  const uint64_t first = 1 + static_cast<uint64_t>(GetParam()) * per_block;
  const uint64_t last = std::min(seeds, first + per_block - 1);
  double sim_s = 0, wall_s = 0;
  uint64_t ops = 0, reads = 0, faults = 0;
  for (uint64_t seed = first; seed <= last; ++seed) {
    VoprOptions o;
    o.seed = seed;
    const VoprResult r = RunVopr(o);
    ASSERT_TRUE(r.ok) << r.violation << "\n  shape: " << r.shape
                      << "\n  replay: " << ReplayCommand(o);
    sim_s += r.sim_time / 1e9;
    wall_s += r.wall_seconds;
    ops += r.ops;
    reads += r.keys_read;
    faults += r.faults;
    // Every seed does real work: reads verified and objects written.
    EXPECT_GT(r.keys_read, 0u) << "seed " << seed;
    EXPECT_GT(r.keys_written, 0u) << "seed " << seed;
  }
  printf(
      "seeds %llu..%llu: %llu faults, %llu ops, %llu verified reads; %.1f simulated s in %.1f "
      "wall s\n",
      static_cast<unsigned long long>(first), static_cast<unsigned long long>(last),
      static_cast<unsigned long long>(faults), static_cast<unsigned long long>(ops),
      static_cast<unsigned long long>(reads), sim_s, wall_s);
}

INSTANTIATE_TEST_SUITE_P(Blocks, VoprSeedsTest, ::testing::Range(0, kBlocks));

// FirstViolation runs seeds 1..max_seeds of `base` until one fails: that seed and its violation,
// or {0, ""} when all pass.
std::pair<uint64_t, std::string> FirstViolation(VoprOptions base, uint64_t max_seeds) {
  for (uint64_t seed = 1; seed <= max_seeds; ++seed) {
    base.seed = seed;
    const VoprResult r = RunVopr(base);
    if (!r.ok) return {seed, r.violation};
  }
  return {0, ""};
}

// High availability: the same invariants with a leader and a standby master, where every master
// fault is a failover (kill of the leader, takeover by the standby from the replicated journal).
// Invariant 2 excuses nothing for a failover: an acknowledged put must survive it.
TEST_F(VoprTest, HaSeedsHoldEveryInvariantAcrossFailovers) {
  const uint64_t seeds = EnvOr("MC_VOPR_HA_SEEDS", 30);
  uint64_t failovers = 0, reads = 0;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    VoprOptions o;
    o.seed = seed;
    o.ha = true;
    const VoprResult r = RunVopr(o);
    ASSERT_TRUE(r.ok) << r.violation << "\n  shape: " << r.shape
                      << "\n  replay: " << ReplayCommand(o);
    failovers += r.failovers;
    reads += r.keys_read;
  }
  printf("ha seeds 1..%llu: %llu failovers, %llu verified reads\n",
         static_cast<unsigned long long>(seeds), static_cast<unsigned long long>(failovers),
         static_cast<unsigned long long>(reads));
  EXPECT_GT(failovers, 3u) << "too few failovers to show anything";
}

// The planted HA bug (the leader answers before the standby confirmed) loses acknowledged puts
// in a failover, and the VOPR sees it within a few seeds.
TEST_F(VoprTest, PlantedAckBeforeReplicatingIsCaught) {
  VoprOptions planted;
  planted.ha = true;
  planted.plant_ack_before_replicating = true;
  const auto [caught_at, violation] = FirstViolation(planted, 30);
  ASSERT_NE(caught_at, 0u) << "the planted bug survived 30 seeds";
  EXPECT_TRUE(violation.find("invariant 2") != std::string::npos ||
              violation.find("invariant 1") != std::string::npos)
      << violation;
  printf("planted ack-before-replicating caught at seed %llu: %s\n",
         static_cast<unsigned long long>(caught_at), violation.c_str());
}

// A planted bug (eviction ignores read leases, enabled through the master's test-only option) is
// caught within a few seeds; the same seeds pass without the plant.
TEST_F(VoprTest, PlantedEvictionOfLeasedObjectsIsCaught) {
  VoprOptions planted;
  planted.plant_evict_leased = true;
  const auto [caught_at, violation] = FirstViolation(planted, 20);
  ASSERT_NE(caught_at, 0u) << "the planted bug survived 20 seeds";
  EXPECT_TRUE(violation.find("invariant 4") != std::string::npos ||
              violation.find("invariant 1") != std::string::npos)
      << violation;
  VoprOptions clean;
  clean.seed = caught_at;
  EXPECT_TRUE(RunVopr(clean).ok) << "seed " << caught_at << " fails without the plant too";
}

// Seeds that found product bugs, with restarted clients mapping their memory at the old
// addresses:
//   15, 102: a reader holding a replica list from before a restart read the new, zeroed memory
//            (fixed: replicas carry the segment's instance; the data path refuses other ones);
//   121:     an RDMA slice submitted before its peer restarted was retried against the new
//            process with its fresh rkeys, overwriting another object (fixed: a slice is never
//            reposted to a later instance of its peer);
//   45:      with the restarted NIC handing out the old memory keys again, a slice posted with a
//            stale descriptor reached the new process over a fresh connection (fixed: the rail
//            handshake carries the peer's instance; a mismatch fails the slice).
//   1663:    (default options) a writer whose put the master had dropped revoked another
//            client's put of the same key; that client's late write then overwrote the object
//            that reused the space (fixed: put-end and put-revoke name the put by its put id).
//   806:     (default options; one NIC, rxe port-down errors) an RDMA write of a put started
//            before a master restart waited out the NIC's outage, reconnected after its owner had
//            remounted, and landed on an object the new master had placed in the same space
//            (fixed: a remount's fence destroys the endpoints peers connected and gives the
//            segment a new instance, so the retried slice is refused).
//   270:     (default options) that fix's first form left the master holding a segment under the
//            instance from before the fence: the mount had arrived late, the remount was lost,
//            and the next heartbeat found the client known (fixed: after a fence the remount is
//            repeated until confirmed; the master keeps the newest instance of a segment).
TEST_F(VoprTest, RegressionSeeds) {
  for (uint64_t seed : {15, 45, 102, 121, 1663, 806, 270}) {
    VoprOptions o;
    o.seed = seed;
    o.reuse_addresses = seed != 1663 && seed != 806 && seed != 270;
    const VoprResult r = RunVopr(o);
    EXPECT_TRUE(r.ok) << r.violation << "\n  replay: " << ReplayCommand(o);
  }
}

TEST_F(VoprTest, ReplayGivesTheIdenticalTrace) {
  for (uint64_t seed : {3, 17}) {
    VoprOptions o;
    o.seed = seed;
    const VoprResult a = RunVopr(o);
    const VoprResult b = RunVopr(o);
    EXPECT_EQ(a.trace_hash, b.trace_hash) << "seed " << seed;
    EXPECT_EQ(a.events, b.events) << "seed " << seed;
    EXPECT_EQ(a.ops, b.ops) << "seed " << seed;
  }
}

}  // namespace
}  // namespace sim
