#include "sim/cluster/sim_master_rpc.h"

#include <algorithm>
#include <chrono>

#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/local_master_client.h"

namespace sim {
namespace {

// KeyCounter passes every call through to the master and counts the keys of batch calls (the
// modelled service time depends on them).
class KeyCounter final : public mooncake::MasterClient {
 public:
  explicit KeyCounter(mooncake::MasterClient* inner) : inner_(inner) {}
  size_t keys() const { return keys_; }

  absl::StatusOr<std::vector<mooncake::ErrorCode>> BatchExistKey(
      absl::Span<const std::string> keys) override {
    keys_ += keys.size();
    return inner_->BatchExistKey(keys);
  }
  absl::StatusOr<mooncake::ReplicaListResult> BatchGetReplicaList(
      absl::Span<const std::string> keys) override {
    keys_ += keys.size();
    return inner_->BatchGetReplicaList(keys);
  }
  absl::StatusOr<std::vector<mooncake::ObjectReplicas>> BatchPutStart(
      absl::Span<const std::string> keys, absl::Span<const uint64_t> sizes,
      const mooncake::ReplicateConfig& config, absl::Span<const uint64_t> put_ids) override {
    keys_ += keys.size();
    return inner_->BatchPutStart(keys, sizes, config, put_ids);
  }
  absl::StatusOr<std::vector<mooncake::ErrorCode>> BatchPutEnd(
      absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids) override {
    keys_ += keys.size();
    return inner_->BatchPutEnd(keys, put_ids);
  }
  absl::StatusOr<std::vector<mooncake::ErrorCode>> BatchPutRevoke(
      absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids,
      bool quarantine) override {
    keys_ += keys.size();
    return inner_->BatchPutRevoke(keys, put_ids, quarantine);
  }
  absl::StatusOr<std::vector<mooncake::ErrorCode>> BatchRemove(absl::Span<const std::string> keys,
                                                               bool force) override {
    keys_ += keys.size();
    return inner_->BatchRemove(keys, force);
  }
  absl::StatusOr<uint64_t> RemoveByRegex(const std::string& regex, bool force) override {
    return inner_->RemoveByRegex(regex, force);
  }
  absl::StatusOr<uint64_t> RemoveAll(bool force) override { return inner_->RemoveAll(force); }
  absl::Status MountSegment(const mooncake::ClientId& client,
                            const mooncake::SegmentDesc& segment) override {
    return inner_->MountSegment(client, segment);
  }
  absl::Status RemountSegment(const mooncake::ClientId& client,
                              absl::Span<const mooncake::SegmentDesc> segments) override {
    return inner_->RemountSegment(client, segments);
  }
  absl::Status UnmountSegment(const mooncake::ClientId& client, const std::string& name,
                              uint64_t base) override {
    return inner_->UnmountSegment(client, name, base);
  }
  absl::StatusOr<mooncake::HeartbeatResult> Heartbeat(const mooncake::ClientId& client) override {
    return inner_->Heartbeat(client);
  }
  absl::StatusOr<std::vector<mooncake::SegmentStatus>> ListSegments() override {
    return inner_->ListSegments();
  }
  absl::StatusOr<mooncake::OffloadSyncResult> OffloadSync(
      const mooncake::ClientId& client, const mooncake::OffloadSyncRequest& request) override {
    return inner_->OffloadSync(client, request);
  }

 private:
  mooncake::MasterClient* const inner_;
  size_t keys_ = 0;
};

}  // namespace

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

SimTime SimMaster::Serve(const std::function<void(mooncake::MasterClient&)>& rpc, size_t* keys) {
  mooncake::LocalMasterClient local(service_.get());
  KeyCounter counted(&local);
  const auto wall0 = std::chrono::steady_clock::now();
  rpc(counted);
  load_.wall_ns += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - wall0)
          .count());
  ++load_.calls;
  load_.keys += counted.keys();
  if (counted.keys() > 0) ++load_.batch_calls;
  *keys = counted.keys();
  if (options_.service_threads <= 0) return 0;
  if (worker_free_.size() != static_cast<size_t>(options_.service_threads)) {
    worker_free_.assign(options_.service_threads, 0);
  }
  const SimTime now = sim_->Now();
  auto worker = std::min_element(worker_free_.begin(), worker_free_.end());
  const SimTime start = std::max(now, *worker);
  const SimTime cost =
      options_.service_per_call + options_.service_per_key * static_cast<SimTime>(counted.keys());
  *worker = start + cost;
  load_.busy += cost;
  load_.queued += start - now;
  return *worker - now;
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
  SimTime sent = 0;
  size_t keys = 0;
};
}  // namespace

void SimMasterRpc::Call(std::function<void(mooncake::MasterClient&)> rpc,
                        std::function<void(absl::Status)> reply) {
  Simulator* sim = master_->sim();
  auto call = std::make_shared<CallState>();
  call->rpc = std::move(rpc);
  call->reply = std::move(reply);
  call->sent = sim->Now();
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
    const SimTime served = master->Serve(call->rpc, &call->keys);
    // With HA the answer leaves only once the change is on the standby (MasterGate::Settle).
    master->WhenDurable([master, host, call, alive, served] {
      if (!master->Delivers(host)) return;  // the answer is lost
      master->sim()->Schedule(served + master->OneWay(), "rpc.answer", [master, host, call, alive] {
        if (alive.expired() || call->replied || master->partitioned(host)) return;
        call->replied = true;
        master->sim()->Cancel(call->timeout);
        if (call->keys > 0) master->AddWaited(master->sim()->Now() - call->sent);
        call->reply(absl::OkStatus());
      });
    });
  });
}

}  // namespace sim
