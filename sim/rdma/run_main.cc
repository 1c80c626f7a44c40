// Seed runner: runs one simulation scenario for one seed and prints the seed, the event-trace hash
// and the result. The same seed always gives the same hash.
//
//   bazel run //sim:run -- --seed=7 --scenario=failover
//   bazel run //sim:run -- --scenario=fuzz --seed=1 --seeds=500     # seeds 1..500, stop at a
//   failure
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "sim/rdma/rdma_scenarios.h"

ABSL_FLAG(uint64_t, seed, 1, "first seed");
ABSL_FLAG(uint64_t, seeds, 1, "number of consecutive seeds to run");
ABSL_FLAG(std::string, scenario, "fuzz", "scenario name");
ABSL_FLAG(bool, check_replay, true, "run each seed twice and require identical trace hashes");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Runs a deterministic simulation scenario. Scenarios: " +
                               absl::StrJoin(sim::ScenarioNames(), ", "));
  absl::ParseCommandLine(argc, argv);
  const std::string scenario = absl::GetFlag(FLAGS_scenario);
  const uint64_t first = absl::GetFlag(FLAGS_seed), count = absl::GetFlag(FLAGS_seeds);
  double sim_s = 0, wall_s = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    auto r = sim::RunScenario(scenario, seed);
    if (!r.ok()) {
      fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 2;
    }
    sim_s += r->simulated_seconds;
    wall_s += r->wall_seconds;
    bool replay_ok = true;
    if (absl::GetFlag(FLAGS_check_replay)) {
      auto again = sim::RunScenario(scenario, seed);
      replay_ok = again.ok() && again->trace_hash == r->trace_hash && again->events == r->events;
    }
    if (count == 1 || !r->ok || !replay_ok) {
      printf("%s", r->report.c_str());
    }
    printf("seed %llu scenario %s trace %016llx events %llu: %s%s\n",
           static_cast<unsigned long long>(seed), scenario.c_str(),
           static_cast<unsigned long long>(r->trace_hash),
           static_cast<unsigned long long>(r->events), r->ok ? "ok" : "FAILED",
           replay_ok ? "" : " (REPLAY DIVERGED)");
    if (!r->ok || !replay_ok) {
      printf("replay: bazel run //sim:run -- --scenario=%s --seed=%llu\n", scenario.c_str(),
             static_cast<unsigned long long>(seed));
      return 1;
    }
  }
  printf("%llu seed(s) ok; %.3f simulated s in %.3f wall s (%.1f simulated s per wall s)\n",
         static_cast<unsigned long long>(count), sim_s, wall_s, wall_s > 0 ? sim_s / wall_s : 0);
  return 0;
}
