// Scenarios that run the production RDMA transport on simulated hosts, shared by the tests, the
// bounded fuzz in the normal suite, its long `manual` version, and the seed runner (//sim:run).
// Each is a pure function of its seed: the same seed replays the same events (same trace hash).
#ifndef SIM_RDMA_RDMA_SCENARIOS_H_
#define SIM_RDMA_RDMA_SCENARIOS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sim/verbs/sim_verbs.h"

namespace sim {

struct ScenarioResult {
  bool ok = false;
  std::string report;  // what happened, for people; names the first violation when !ok
  uint64_t trace_hash = 0;
  uint64_t events = 0;
  double simulated_seconds = 0;
  double wall_seconds = 0;
  double efficiency = 0;  // striping: achieved / aggregate line rate
  int requests = 0;
  int failed_requests = 0;  // completed with an error (allowed under faults; never lost)
};

// Host 0 WRITEs (or READs) `bytes` to host 1 in 4 MiB requests over `nics` 200 Gbps NICs each.
// Timing only (no payload copies). ok when every request succeeded.
ScenarioResult StripingScenario(uint64_t seed, int nics, uint64_t bytes, bool read);

// Two NICs; one goes down mid-batch and comes back. Every request must succeed with the right
// bytes, the failed rail must be paused, and traffic must use it again after it returns. The
// NIC is the requester's own; `local_port_down` says how its QPs fail (RETRY_EXC_ERR after the
// retries, as on hardware, or LOC_QP_OP_ERR at once, as on rxe).
ScenarioResult FailoverScenario(uint64_t seed, SimVerbsOptions::LocalPortDown local_port_down =
                                                   SimVerbsOptions::LocalPortDown::kPacketsLost);

// A peer deregisters memory a request targets: that request fails with a clear error, the other
// peer's requests in the same batch succeed, and the rail works again afterwards.
ScenarioResult AccessErrorScenario(uint64_t seed);

struct FuzzOptions {
  int rounds = 4;
  int requests_per_round = 12;
  uint64_t max_request = 512 << 10;
  int faults = 3;
};

// Random READs and WRITEs among 3 hosts with 1 to 4 NICs each, under random NIC down/up, loss,
// latency and bandwidth faults. Checks: every request completes exactly once within the bound;
// every successful request moved exactly the right bytes; errors are TRANSFER_FAIL only.
ScenarioResult FuzzScenario(uint64_t seed, const FuzzOptions& options = FuzzOptions());

std::vector<std::string> ScenarioNames();
// RunScenario runs one by name ("striping2", "striping4", "striping8", "failover", "access_error",
// "fuzz").
absl::StatusOr<ScenarioResult> RunScenario(const std::string& name, uint64_t seed);

}  // namespace sim

#endif  // SIM_RDMA_RDMA_SCENARIOS_H_
