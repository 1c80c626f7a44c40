// World: a whole simulated cluster in one object: the simulator (clock, scheduler, seed), the
// network, and one SimVerbs per host. It is what a simulation test or scenario builds first; the
// RDMA transport of each host gets `verbs(host)` as its mooncake::Verbs and `clock()` as its Clock.
//
//   sim::World world(/*seed=*/42);
//   sim::NicSpec nic;                        // 200 Gbps, 1 us link latency, 4096 MTU, 64 GiB MRs
//   sim::HostId a = world.AddHost("a", {"erdma_0", "erdma_1"}, nic);
//   sim::HostId b = world.AddHost("b", {"erdma_0", "erdma_1"}, nic);
//   mooncake::RdmaTransport ta(world.verbs(a), world.clock(), &handshake, "a", options);
//   world.sim().ScheduleRepeating(sim::kMicrosecond, "poll.a", [&] { ta.Poll(); return true; });
//   world.network().ScheduleNicDown(world.network().FindNic(a, "erdma_1"), 5 * sim::kMillisecond);
//   bool done = world.RunFor([&] { return batch->Done(); }, sim::kSecond);
//   printf("seed %lu hash %016lx\n", world.sim().seed(), world.sim().trace_hash());
#ifndef SIM_VERBS_WORLD_H_
#define SIM_VERBS_WORLD_H_

#include <functional>
#include <string>
#include <vector>

#include "mooncake/common/clock.h"
#include "sim/kernel/network.h"
#include "sim/kernel/simulator.h"
#include "sim/verbs/sim_verbs.h"

namespace sim {

struct WorldOptions {
  uint64_t seed = 1;
  NetworkOptions network;
  SimVerbsOptions verbs;
};

class World {
 public:
  explicit World(uint64_t seed = 1);
  explicit World(const WorldOptions& options);
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  Simulator& sim() { return sim_; }
  Network& network() { return network_; }
  SimVerbsFabric& fabric() { return fabric_; }
  // clock reads simulated time; give it to production code as its mooncake::Clock.
  mooncake::Clock* clock() { return sim_.clock(); }

  // AddHost adds a host with one NIC per name in `nics`, each a copy of `nic_template` with that
  // name, and returns its id.
  HostId AddHost(const std::string& name, const std::vector<std::string>& nics,
                 const NicSpec& nic_template = NicSpec());
  // AddNic adds one more NIC to a host.
  NicId AddNic(HostId host, const NicSpec& spec) { return network_.AddNic(host, spec); }

  // verbs returns the host's SimVerbs (a mooncake::Verbs).
  SimVerbs* verbs(HostId host) { return fabric_.ForHost(host); }
  SimVerbs* verbs(const std::string& host_name);

  // RunFor runs events until `done()` holds or `timeout` of simulated time passed; returns done().
  bool RunFor(const std::function<bool()>& done, SimTime timeout) {
    return sim_.RunUntil(done, sim_.Now() + timeout);
  }
  // RunUntil is the same with an absolute deadline.
  bool RunUntil(const std::function<bool()>& done, SimTime deadline) {
    return sim_.RunUntil(done, deadline);
  }

 private:
  // Declaration order is destruction order in reverse: SimVerbs go first, the simulator last.
  Simulator sim_;
  Network network_;
  SimVerbsFabric fabric_;
};

}  // namespace sim

#endif  // SIM_VERBS_WORLD_H_
