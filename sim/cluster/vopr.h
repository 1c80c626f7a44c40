// VOPR: the whole store under a seeded workload and seeded faults, checked by invariants after
// every step (the TigerBeetle "VOPR" / FoundationDB simulation way; docs/architecture.md, "What
// runs in the simulator").
//
// One seed picks the cluster shape (hosts, TP ranks, 1..8 NICs, MHA or MLA keys, replicas), the
// workload and the faults; RunVopr runs it in a StoreCluster and stops at the first violation:
//   1. a read returns exactly the bytes put under the key (every key's bytes are a function of
//      the key, so any writer's copy is right and anything else is wrong);
//   2. an acknowledged put stays readable (exists 1, get finds it) until it is removed, evicted,
//      or lost with its segment (host death, client_ttl expiry, master restart); with `ha` the
//      master fails over instead of restarting, and a failover excuses nothing;
//   3. a crashed host's segments leave the master within client_ttl plus a tick (so no exists == 1
//      for objects stored only there);
//   4. no object is evicted while a completed read holds its lease; the master's allocator and
//      object accounting is conserved (MasterService::CheckInvariants after every tick);
//   5. every operation completes exactly once, within op_bound, with success or a known ErrorCode;
//   6. once every fault healed, fresh puts and gets succeed on every client within heal_bound.
//
//   sim::VoprOptions o;  o.seed = 42;
//   sim::VoprResult r = sim::RunVopr(o);
//   if (!r.ok) printf("%s\n", r.violation.c_str());
#ifndef SIM_CLUSTER_VOPR_H_
#define SIM_CLUSTER_VOPR_H_

#include <cstdint>
#include <map>
#include <string>

#include "sim/kernel/simulator.h"

namespace sim {

struct VoprOptions {
  uint64_t seed = 1;
  // A planted bug: the master's eviction policy ignores read leases.
  bool plant_evict_leased = false;
  // High availability: a leader and a standby (SimMasterOptions::ha); master faults are
  // failovers (kill of the leader, takeover by the standby) instead of restarts.
  bool ha = false;
  // A planted bug for ha: the leader answers before the standby confirmed.
  bool plant_ack_before_replicating = false;
  // Faults are injected in [0, fault_window); each heals by fault_window + max fault length.
  SimTime fault_window = 1000 * kMillisecond;
  bool faults = true;
  // Every restarted client gets its old memory addresses back (StoreClusterOptions); without
  // this, half the seeds do.
  bool reuse_addresses = false;
  // Pause between a loop's requests: uniform in [0, max_think].
  SimTime max_think = kMillisecond;
  // Object (page) size; 0 = picked by the seed (2 or 4 KiB).
  uint64_t object_size = 0;
  // MR chunk size in bytes for every registration; 0 = picked by the seed (a third of the seeds
  // chunk their memory so that objects span chunks).
  uint64_t mr_chunk = 0;
  // Log every fault and violation context at INFO.
  bool verbose = false;
};

struct VoprResult {
  uint64_t seed = 0;
  bool ok = true;
  std::string violation;  // the first one, with its time and context
  std::string shape;      // the seed's cluster shape and workload
  uint64_t trace_hash = 0;
  uint64_t events = 0;
  SimTime sim_time = 0;
  double wall_seconds = 0;
  int faults = 0;
  uint64_t failovers = 0;    // master failovers that happened (ha)
  uint64_t ops = 0;          // completed operations
  uint64_t failed_keys = 0;  // per-key results that were errors
  uint64_t keys_written = 0;
  uint64_t keys_read = 0;  // verified reads
  uint64_t bytes_moved = 0;
  SimTime max_op_time = 0;
  // bytes_moved / (sim_time * the cluster's total NIC line rate).
  double line_rate_fraction = 0;
  uint64_t evicted = 0;
  std::map<int64_t, uint64_t> errors;  // per-key error results by ErrorCode
};

VoprResult RunVopr(const VoprOptions& options);

// ReplayCommand is the command that replays one seed.
std::string ReplayCommand(const VoprOptions& options);

}  // namespace sim

#endif  // SIM_CLUSTER_VOPR_H_
