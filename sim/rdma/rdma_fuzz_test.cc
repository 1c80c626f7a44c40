// Random transfers and faults over many seeds (bounded here; the `manual` target runs more):
// bytes are checked, and no request is lost or completed twice (a double completion aborts).
// MC_FUZZ_SEEDS overrides the number of seeds.
#include <cstdlib>

#include "gtest/gtest.h"
#include "sim/rdma/rdma_scenarios.h"

namespace sim {
namespace {

TEST(RdmaFuzzTest, RandomTransfersUnderRandomFaults) {
  const char* env = std::getenv("MC_FUZZ_SEEDS");
  const uint64_t seeds = env ? std::strtoull(env, nullptr, 10) : 300;
  int requests = 0, failed = 0;
  double sim_s = 0, wall_s = 0;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    ScenarioResult r = FuzzScenario(seed);
    ASSERT_TRUE(r.ok) << r.report
                      << "replay: bazel run //sim:run -- --scenario=fuzz --seed=" << seed;
    requests += r.requests;
    failed += r.failed_requests;
    sim_s += r.simulated_seconds;
    wall_s += r.wall_seconds;
  }
  std::printf(
      "%llu seeds, %d requests (%d failed after retries under faults), %.1f simulated s in "
      "%.1f wall s\n",
      static_cast<unsigned long long>(seeds), requests, failed, sim_s, wall_s);
}

}  // namespace
}  // namespace sim
