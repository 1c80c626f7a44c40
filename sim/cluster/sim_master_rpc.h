// SimMaster and SimMasterRpc: the real MasterService inside the simulator, behind a simulated RPC.
//
// SimMaster owns the MasterService (on the simulated clock), runs its Tick() periodically and can
// be restarted (the new master starts empty, as mooncake_master does; clients remount on their
// next heartbeat). It also holds the client <-> master link faults: per-host partitions, loss and
// latency spikes.
//
// With options.ha, the master is a leader whose journal (mooncake/master/ha, the same records as
// production) goes to a standby over a simulated link; every answer waits until the standby
// confirmed every change so far (WaitDurable). Failover() kills the leader (records and answers
// in flight are lost) and, once its lease has run out (failover_delay), the standby takes over
// with MasterService::Restore of what it applied; the old leader comes back as the new standby.
//
// SimMasterRpc is one client's mooncake::MasterChannel. A call is two messages: the request runs
// the call on the master when it arrives, the answer runs the reply when it arrives. Either may be
// lost (loss, partition, master down); a call with no answer within rpc_timeout replies
// RPC_TIMEOUT. Replies run exactly once, and never after the client died (its `alive` token).
//
//   sim::SimMaster master(&sim, master_options, sim::SimMasterOptions());
//   auto alive = std::make_shared<bool>(true);
//   sim::SimMasterRpc rpc(&master, host, alive);
//   mooncake::StoreCoreOptions core;  core.master = &rpc;  ...
#ifndef SIM_CLUSTER_SIM_MASTER_RPC_H_
#define SIM_CLUSTER_SIM_MASTER_RPC_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mooncake/master/ha/proto_journal.h"
#include "mooncake/master/ha/standby_state.h"
#include "mooncake/master/master_service.h"
#include "mooncake/store/master_channel.h"
#include "sim/kernel/network.h"
#include "sim/kernel/simulator.h"

namespace sim {

struct SimMasterOptions {
  SimTime latency = 30 * kMicrosecond;  // one way, plus jitter
  SimTime jitter = 20 * kMicrosecond;
  SimTime rpc_timeout = 100 * kMillisecond;
  SimTime tick_period = 50 * kMillisecond;
  // High availability (above). The lease service is modelled by the delay: the standby takes
  // over failover_delay after the leader died, and never while it lives.
  bool ha = false;
  SimTime failover_delay = 20 * kMillisecond;
  // Planted bug: answer before the standby confirmed (a failover then loses acknowledged puts).
  bool plant_ack_before_replicating = false;
  // The master's service time, modelled: a request runs on the MasterService when it arrives,
  // then holds one of `service_threads` workers for service_per_call + service_per_key * keys
  // before its answer leaves; requests queue for a free worker in arrival order. 0 threads: the
  // answer leaves at once.
  int service_threads = 0;
  SimTime service_per_call = 0;
  SimTime service_per_key = 0;
};

// MasterLoad is what the master did: calls and keys, the wall time spent inside the real
// MasterService, and the modelled busy and queueing time.
struct MasterLoad {
  uint64_t calls = 0;
  uint64_t batch_calls = 0;  // calls with keys
  uint64_t keys = 0;  // keys in batch calls (exist, replica list, put start/end/revoke, remove)
  uint64_t wall_ns = 0;
  SimTime busy = 0;    // modelled service time, summed over calls
  SimTime queued = 0;  // time requests waited for a free worker, summed
  SimTime waited = 0;  // batch calls' round trips as their clients saw them (sent to answer)
};

class SimMaster {
 public:
  SimMaster(Simulator* sim, const mooncake::MasterServiceOptions& service_options,
            const SimMasterOptions& options);
  ~SimMaster();
  SimMaster(const SimMaster&) = delete;
  SimMaster& operator=(const SimMaster&) = delete;

  Simulator* sim() const { return sim_; }
  const SimMasterOptions& options() const { return options_; }
  // service is the running master, or nullptr while it restarts.
  mooncake::MasterService* service() { return service_.get(); }
  bool up() const { return service_ != nullptr; }
  uint64_t restarts() const { return restarts_; }

  // Restart kills the master now (every object is forgotten) and starts an empty one after
  // `downtime`. on_restart (if set) runs at the kill.
  void Restart(SimTime downtime);
  void set_on_restart(std::function<void()> fn) { on_restart_ = std::move(fn); }
  // Failover (ha only) kills the leader now; the standby leads after failover_delay.
  void Failover();
  uint64_t failovers() const { return failovers_; }
  // When the last standby took over (-1: never).
  SimTime last_takeover() const { return last_takeover_; }
  // The first error a standby hit applying the journal (a replication bug), or "".
  const std::string& replication_error() const { return replication_error_; }
  // WhenDurable runs `fn` once every change so far is confirmed by the standby: at once without
  // ha (or with the planted bug); never if the leader dies first.
  void WhenDurable(std::function<void()> fn);
  // set_after_tick installs a function run after every Tick (e.g. an invariant check).
  void set_after_tick(std::function<void()> fn) { after_tick_ = std::move(fn); }

  // Link faults between clients and the master.
  void SetPartitioned(HostId host, bool partitioned);
  bool partitioned(HostId host) const;
  void SetLoss(double probability) { loss_ = probability; }
  void SetExtraLatency(SimTime extra) { extra_latency_ = extra; }
  void HealLinks();

  // Delivers reports whether a message to or from `host` leaves now and gets there (draws loss).
  bool Delivers(HostId host);
  // Serve runs `rpc` on the service now (it must be up) and returns when its answer may leave:
  // after the modelled queueing and service time. `keys` gets the call's key count.
  SimTime Serve(const std::function<void(mooncake::MasterClient&)>& rpc, size_t* keys);
  const MasterLoad& load() const { return load_; }
  void AddWaited(SimTime round_trip) { load_.waited += round_trip; }
  // OneWay is a message's latency now.
  SimTime OneWay();

 private:
  class Journal;
  // Sends the records not yet sent to the standby, in order; confirmations come back in order.
  void Ship();
  void StartService(const mooncake::MasterSnapshot* state);

  Simulator* const sim_;
  mooncake::MasterServiceOptions service_options_;
  const SimMasterOptions options_;
  std::unique_ptr<mooncake::MasterService> service_;
  std::map<HostId, bool> partitioned_;
  double loss_ = 0;
  SimTime extra_latency_ = 0;
  uint64_t restarts_ = 0;
  std::function<void()> on_restart_;
  std::function<void()> after_tick_;
  // HA: the leader's journal, the standby, and the replication stream of the current term.
  std::unique_ptr<Journal> journal_;
  mooncake::ha::StandbyState standby_;
  uint64_t term_ = 0;
  uint64_t tail_ = 0;     // records journaled this term
  uint64_t durable_ = 0;  // confirmed by the standby
  std::vector<mooncake::proto::ha::Op> unsent_;
  std::multimap<uint64_t, std::function<void()>> waiting_;
  SimTime stream_at_ = 0;  // keeps the link in order despite jitter
  SimTime acks_at_ = 0;
  uint64_t failovers_ = 0;
  SimTime last_takeover_ = -1;
  std::string replication_error_;
  std::vector<SimTime> worker_free_;  // per modelled worker: when it is free
  MasterLoad load_;
};

class SimMasterRpc final : public mooncake::MasterChannel {
 public:
  // `alive` is the client's life: replies stop once it is gone.
  SimMasterRpc(SimMaster* master, HostId host, std::weak_ptr<bool> alive)
      : master_(master), host_(host), alive_(std::move(alive)) {}
  void Call(std::function<void(mooncake::MasterClient&)> rpc,
            std::function<void(absl::Status)> reply) override;

 private:
  SimMaster* const master_;
  const HostId host_;
  const std::weak_ptr<bool> alive_;
};

}  // namespace sim

#endif  // SIM_CLUSTER_SIM_MASTER_RPC_H_
