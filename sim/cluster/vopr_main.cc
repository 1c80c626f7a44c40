// vopr: runs the whole-store simulation (sim/vopr.h) over consecutive seeds until `--seeds` ran or
// one seed violates an invariant; prints the violation, the seed and the command that replays it,
// and checks that the replay gives the identical trace.
//
//   bazel run //sim:vopr -- --seeds=1000             # seeds 1..1000
//   bazel run //sim:vopr -- --seed=417               # replay one seed
//   bazel run //sim:vopr -- --seeds=100 --plant_evict_leased   # show that a planted bug is caught
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "mooncake/common/logging.h"
#include "sim/cluster/vopr.h"

ABSL_FLAG(uint64_t, seed, 1, "first seed");
ABSL_FLAG(uint64_t, seeds, 1, "number of consecutive seeds to run");
ABSL_FLAG(bool, faults, true, "inject faults");
ABSL_FLAG(bool, plant_evict_leased, false, "test-only planted bug: eviction ignores leases");
ABSL_FLAG(bool, ha, false, "a leader and a standby master; master faults are failovers");
ABSL_FLAG(bool, plant_ack_before_replicating, false,
          "test-only planted bug (with --ha): the leader answers before the standby confirmed");
ABSL_FLAG(bool, check_replay, true, "replay a failing seed (or a single seed) and compare traces");
ABSL_FLAG(bool, reuse_addresses, false, "restarted clients map their memory at the old addresses");
ABSL_FLAG(bool, verbose, false, "log the faults of each seed");
ABSL_FLAG(int64_t, max_think_us, 1000, "pause between a loop's requests, uniform in [0, this] us");
ABSL_FLAG(uint64_t, object_kib, 0, "object size in KiB (0 = picked by the seed)");
ABSL_FLAG(uint64_t, mr_chunk, 0, "MR chunk size in bytes (0 = picked by the seed)");

namespace {
void Print(const sim::VoprResult& r) {
  printf(
      "seed %llu: %s; %d faults; %llu ops, %llu keys written, %llu reads verified, "
      "%llu evicted, %llu key errors; max op %.1f ms; %.2f sim s in %.2f wall s; trace %016llx\n",
      static_cast<unsigned long long>(r.seed), r.ok ? "ok" : "VIOLATION", r.faults,
      static_cast<unsigned long long>(r.ops), static_cast<unsigned long long>(r.keys_written),
      static_cast<unsigned long long>(r.keys_read), static_cast<unsigned long long>(r.evicted),
      static_cast<unsigned long long>(r.failed_keys), r.max_op_time / 1e6, r.sim_time / 1e9,
      r.wall_seconds, static_cast<unsigned long long>(r.trace_hash));
  if (!r.errors.empty()) {
    printf("  key errors by code:");
    for (const auto& [code, n] : r.errors) {
      printf(" %lld x%llu", static_cast<long long>(code), static_cast<unsigned long long>(n));
    }
    printf("\n");
  }
}
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Runs the whole-store deterministic simulation over seeds.");
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_verbose)) mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
  const uint64_t first = absl::GetFlag(FLAGS_seed), count = absl::GetFlag(FLAGS_seeds);
  double sim_s = 0, wall_s = 0, bytes = 0, line = 0;
  uint64_t ops = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    sim::VoprOptions o;
    o.seed = seed;
    o.faults = absl::GetFlag(FLAGS_faults);
    o.plant_evict_leased = absl::GetFlag(FLAGS_plant_evict_leased);
    o.ha = absl::GetFlag(FLAGS_ha);
    o.plant_ack_before_replicating = absl::GetFlag(FLAGS_plant_ack_before_replicating);
    o.verbose = absl::GetFlag(FLAGS_verbose);
    o.reuse_addresses = absl::GetFlag(FLAGS_reuse_addresses);
    o.max_think = absl::GetFlag(FLAGS_max_think_us) * sim::kMicrosecond;
    o.object_size = absl::GetFlag(FLAGS_object_kib) << 10;
    o.mr_chunk = absl::GetFlag(FLAGS_mr_chunk);
    const sim::VoprResult r = sim::RunVopr(o);
    sim_s += r.sim_time / 1e9;
    wall_s += r.wall_seconds;
    ops += r.ops;
    bytes += static_cast<double>(r.bytes_moved);
    line += r.line_rate_fraction * (r.sim_time / 1e9);
    if (count == 1 || !r.ok || (seed - first + 1) % 10 == 0) {
      printf("[%llu/%llu] %s\n", static_cast<unsigned long long>(seed - first + 1),
             static_cast<unsigned long long>(count), r.shape.c_str());
      Print(r);
      fflush(stdout);
    }
    if (!r.ok) {
      printf("VIOLATION (seed %llu): %s\n", static_cast<unsigned long long>(seed),
             r.violation.c_str());
      if (absl::GetFlag(FLAGS_check_replay)) {
        const sim::VoprResult again = sim::RunVopr(o);
        const bool same = again.trace_hash == r.trace_hash && again.events == r.events &&
                          again.violation == r.violation;
        printf("replay: %s\n", same ? "identical trace and violation" : "DIVERGED");
      }
      printf("replay with: %s\n", sim::ReplayCommand(o).c_str());
      return 1;
    }
    if (count == 1 && absl::GetFlag(FLAGS_check_replay)) {
      const sim::VoprResult again = sim::RunVopr(o);
      printf("replay: %s\n", again.trace_hash == r.trace_hash ? "identical trace" : "DIVERGED");
      if (again.trace_hash != r.trace_hash) return 1;
    }
  }
  printf(
      "%llu seed(s), 0 violations; %llu ops; %.2f simulated s in %.2f wall s (%.2f simulated "
      "s per wall s); %.1f MiB moved, %.2f%% of the simulated line rate\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(ops), sim_s, wall_s,
      wall_s > 0 ? sim_s / wall_s : 0, bytes / (1 << 20), sim_s > 0 ? 100 * line / sim_s : 0);
  return 0;
}
