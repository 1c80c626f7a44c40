#include "sim/cluster/sim_master_rpc.h"

#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/local_master_client.h"

namespace sim {

// The leader's journal: records queue up until Ship sends them.
class SimMaster::Journal final : public mooncake::ha::ProtoJournal {
 public:
  explicit Journal(SimMaster* master) : master_(master) {}

 protected:
  void Append(mooncake::proto::ha::Op* op) override {
    ++master_->tail_;
    master_->unsent_.push_back(std::move(*op));
  }

 private:
  SimMaster* const master_;
};

SimMaster::SimMaster(Simulator* sim, const mooncake::MasterServiceOptions& service_options,
                     const SimMasterOptions& options)
    : sim_(sim), service_options_(service_options), options_(options), standby_(sim->clock()) {
  if (options_.ha) {
    journal_ = std::make_unique<Journal>(this);
    service_options_.journal = journal_.get();
  }
  StartService(nullptr);
  sim_->ScheduleRepeating(options_.tick_period, "master.tick", [this] {
    if (service_ != nullptr) {
      service_->Tick();
      Ship();
      if (after_tick_) after_tick_();
    }
    return true;
  });
}

SimMaster::~SimMaster() = default;

void SimMaster::StartService(const mooncake::MasterSnapshot* state) {
  service_ = std::make_unique<mooncake::MasterService>(service_options_, sim_->clock());
  if (!options_.ha) return;
  ++term_;
  tail_ = durable_ = 0;
  unsent_.clear();
  waiting_.clear();
  if (state != nullptr) {
    if (absl::Status s = service_->Restore(*state); !s.ok() && replication_error_.empty()) {
      replication_error_ = std::string(s.message());
    }
  }
  // The other master follows from a snapshot of the new leader (sent at once here).
  standby_.Reset();
  if (absl::Status s =
          standby_.ApplySnapshotPart(mooncake::ha::SnapshotToProto(service_->Snapshot(), 0));
      !s.ok() && replication_error_.empty()) {
    replication_error_ = std::string(s.message());
  }
}

void SimMaster::Ship() {
  if (!options_.ha || unsent_.empty()) return;
  auto batch = std::make_shared<std::vector<mooncake::proto::ha::Op>>(std::move(unsent_));
  unsent_.clear();
  const uint64_t last = tail_;
  const uint64_t term = term_;
  stream_at_ = std::max(stream_at_, sim_->Now() + OneWay());
  sim_->ScheduleAt(stream_at_, "ha.records", [this, batch, last, term] {
    if (term != term_ || service_ == nullptr) return;  // the leader died: its stream with it
    for (const mooncake::proto::ha::Op& op : *batch) {
      if (absl::Status s = standby_.ApplyOp(op); !s.ok() && replication_error_.empty()) {
        replication_error_ = std::string(s.message());
      }
    }
    acks_at_ = std::max(acks_at_, sim_->Now() + OneWay());
    sim_->ScheduleAt(acks_at_, "ha.ack", [this, last, term] {
      if (term != term_ || service_ == nullptr) return;
      durable_ = std::max(durable_, last);
      while (!waiting_.empty() && waiting_.begin()->first <= durable_) {
        std::function<void()> fn = std::move(waiting_.begin()->second);
        waiting_.erase(waiting_.begin());
        fn();
      }
    });
  });
}

void SimMaster::WhenDurable(std::function<void()> fn) {
  if (!options_.ha || options_.plant_ack_before_replicating || durable_ >= tail_) {
    fn();
    return;
  }
  waiting_.emplace(tail_, std::move(fn));
  Ship();
}

void SimMaster::Failover() {
  if (!options_.ha || service_ == nullptr) return;
  ++failovers_;
  ++term_;  // records, confirmations and answers of the dead leader's term are lost
  service_.reset();
  unsent_.clear();
  waiting_.clear();
  sim_->Schedule(options_.failover_delay, "ha.takeover", [this] {
    const mooncake::MasterSnapshot state = standby_.ToSnapshot();
    StartService(&state);
    last_takeover_ = sim_->Now();
  });
}

void SimMaster::Restart(SimTime downtime) {
  if (service_ == nullptr) return;  // already down; the pending start brings it back
  ++restarts_;
  service_.reset();
  if (on_restart_) on_restart_();
  sim_->Schedule(downtime, "master.start", [this] { StartService(nullptr); });
}

void SimMaster::SetPartitioned(HostId host, bool partitioned) { partitioned_[host] = partitioned; }

bool SimMaster::partitioned(HostId host) const {
  auto it = partitioned_.find(host);
  return it != partitioned_.end() && it->second;
}

void SimMaster::HealLinks() {
  partitioned_.clear();
  loss_ = 0;
  extra_latency_ = 0;
}

bool SimMaster::Delivers(HostId host) {
  if (partitioned(host)) return false;
  if (loss_ > 0 && sim_->rng().Bernoulli(loss_)) return false;
  return true;
}

SimTime SimMaster::OneWay() {
  SimTime jitter =
      options_.jitter > 0
          ? static_cast<SimTime>(sim_->rng().Uniform(static_cast<uint64_t>(options_.jitter)))
          : 0;
  return options_.latency + jitter + extra_latency_;
}

namespace {
struct CallState {
  std::function<void(mooncake::MasterClient&)> rpc;
  std::function<void(absl::Status)> reply;
  bool replied = false;
  EventId timeout;
};
}  // namespace

void SimMasterRpc::Call(std::function<void(mooncake::MasterClient&)> rpc,
                        std::function<void(absl::Status)> reply) {
  Simulator* sim = master_->sim();
  auto call = std::make_shared<CallState>();
  call->rpc = std::move(rpc);
  call->reply = std::move(reply);
  std::weak_ptr<bool> alive = alive_;
  call->timeout = sim->Schedule(master_->options().rpc_timeout, "rpc.timeout", [call, alive] {
    if (alive.expired() || call->replied) return;
    call->replied = true;
    call->reply(mooncake::MakeError(mooncake::ErrorCode::RPC_TIMEOUT, "master did not answer"));
  });
  if (!master_->Delivers(host_)) return;  // the request is lost
  SimMaster* master = master_;
  const HostId host = host_;
  sim->Schedule(master->OneWay(), "rpc.request", [master, host, call, alive] {
    // The request arrives: lost if the master is down or the host got cut off meanwhile.
    if (!master->up() || master->partitioned(host)) return;
    mooncake::LocalMasterClient client(master->service());
    call->rpc(client);
    // With HA the answer leaves only once the change is on the standby (MasterGate::Settle).
    master->WhenDurable([master, host, call, alive] {
      if (!master->Delivers(host)) return;  // the answer is lost
      master->sim()->Schedule(master->OneWay(), "rpc.answer", [master, host, call, alive] {
        if (alive.expired() || call->replied || master->partitioned(host)) return;
        call->replied = true;
        master->sim()->Cancel(call->timeout);
        call->reply(absl::OkStatus());
      });
    });
  });
}

}  // namespace sim
