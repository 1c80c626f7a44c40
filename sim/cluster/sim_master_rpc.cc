#include "sim/cluster/sim_master_rpc.h"

#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/local_master_client.h"

namespace sim {

SimMaster::SimMaster(Simulator* sim, const mooncake::MasterServiceOptions& service_options,
                     const SimMasterOptions& options)
    : sim_(sim), service_options_(service_options), options_(options) {
  service_ = std::make_unique<mooncake::MasterService>(service_options_, sim_->clock());
  sim_->ScheduleRepeating(options_.tick_period, "master.tick", [this] {
    if (service_ != nullptr) {
      service_->Tick();
      if (after_tick_) after_tick_();
    }
    return true;
  });
}

void SimMaster::Restart(SimTime downtime) {
  if (service_ == nullptr) return;  // already down; the pending start brings it back
  ++restarts_;
  service_.reset();
  if (on_restart_) on_restart_();
  sim_->Schedule(downtime, "master.start", [this] {
    service_ = std::make_unique<mooncake::MasterService>(service_options_, sim_->clock());
  });
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
    if (!master->Delivers(host)) return;  // the answer is lost
    master->sim()->Schedule(master->OneWay(), "rpc.answer", [master, host, call, alive] {
      if (alive.expired() || call->replied || master->partitioned(host)) return;
      call->replied = true;
      master->sim()->Cancel(call->timeout);
      call->reply(absl::OkStatus());
    });
  });
}

}  // namespace sim
