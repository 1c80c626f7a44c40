#include "sim/cluster/sim_engine.h"

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"

namespace sim {

using mooncake::ErrorCode;
using mooncake::MakeError;

// Background work of one engine, as simulated events after the control-path delay. Work of an
// engine that is gone is dropped.
class SimEngine::Executor final : public mooncake::Executor {
 public:
  Executor(Simulator* sim, SimTime delay, std::weak_ptr<bool> token)
      : sim_(sim), delay_(delay), token_(std::move(token)) {}
  void Schedule(std::function<void()> fn) override {
    sim_->Schedule(delay_, "engine.background", [token = token_, fn = std::move(fn)] {
      if (!token.expired()) fn();
    });
  }

 private:
  Simulator* const sim_;
  const SimTime delay_;
  const std::weak_ptr<bool> token_;
};

// One engine's handle on the shared directory; a dead process writes nothing.
class SimEngine::Metadata final : public mooncake::metadata::MetadataClient {
 public:
  Metadata(SimMetadataDirectory* directory, std::weak_ptr<bool> alive)
      : directory_(directory), alive_(std::move(alive)) {}
  absl::StatusOr<std::string> Get(const std::string& key) override {
    if (alive_.expired()) return absl::UnavailableError("process is dead");
    auto it = directory_->find(key);
    if (it == directory_->end()) return absl::NotFoundError(key);
    return it->second;
  }
  absl::Status Put(const std::string& key, const std::string& value) override {
    if (alive_.expired()) return absl::UnavailableError("process is dead");
    (*directory_)[key] = value;
    return absl::OkStatus();
  }
  absl::Status Remove(const std::string& key) override {
    if (alive_.expired()) return absl::UnavailableError("process is dead");
    return directory_->erase(key) > 0 ? absl::OkStatus() : absl::NotFoundError(key);
  }

 private:
  SimMetadataDirectory* const directory_;
  const std::weak_ptr<bool> alive_;
};

// The control channel: straight into the peer engine, if its host and process are up.
class SimEngine::Control final : public mooncake::PeerControl {
 public:
  explicit Control(SimEngines* engines) : engines_(engines) {}

  absl::StatusOr<std::string> GetDescriptor(const std::string& segment) override {
    absl::StatusOr<SimEngine*> peer = Find(segment);
    if (!peer.ok()) return peer.status();
    return (*peer)->engine_->DescriptorJson();
  }

  absl::StatusOr<mooncake::EndpointInfo> Exchange(const std::string& segment,
                                                  const mooncake::EndpointInfo& mine) override {
    absl::StatusOr<SimEngine*> peer = Find(segment);
    if (!peer.ok()) return peer.status();
    return (*peer)->engine_->AcceptRdma(mine);
  }

  absl::StatusOr<std::string> CallService(const std::string& segment,
                                          const std::string& request) override {
    absl::StatusOr<SimEngine*> peer = Find(segment);
    if (!peer.ok()) return peer.status();
    return (*peer)->engine_->HandleService(request);
  }

 private:
  absl::StatusOr<SimEngine*> Find(const std::string& segment) {
    auto it = engines_->live_.find(segment);
    if (it == engines_->live_.end() || it->second->alive_.expired() ||
        it->second->engine_ == nullptr) {
      // A host that is up refuses (nothing listens); a dead host does not answer at all.
      const bool host_up =
          it == engines_->live_.end() || engines_->world_->network().host_alive(it->second->host_);
      if (!host_up) return MakeError(ErrorCode::RPC_TIMEOUT, absl::StrCat(segment, ": no answer"));
      return MakeError(ErrorCode::SEGMENT_NOT_FOUND,
                       absl::StrCat("segment ", segment, ": nothing listens there"));
    }
    return it->second;
  }

  SimEngines* const engines_;
};

SimEngine::~SimEngine() {
  token_.reset();
  engine_.reset();
  auto it = engines_->live_.find(name_);
  if (it != engines_->live_.end() && it->second == this) engines_->live_.erase(it);
}

void SimEngine::EnsurePolling() {
  if (polling_) return;
  polling_ = true;
  std::weak_ptr<bool> token = token_;
  engines_->world_->sim().ScheduleRepeating(engines_->options_.poll_period, "engine.poll",
                                            [this, token] {
                                              if (token.expired()) return false;
                                              engine_->Poll();
                                              if (!engine_->Idle()) return true;
                                              polling_ = false;
                                              return false;
                                            });
}

SimEngines::SimEngines(World* world, const SimEngineOptions& options)
    : world_(world), options_(options) {}

absl::StatusOr<std::unique_ptr<SimEngine>> SimEngines::Create(const std::string& name, HostId host,
                                                              mooncake::RdmaOptions rdma,
                                                              std::weak_ptr<bool> alive) {
  std::unique_ptr<SimEngine> e(new SimEngine());
  e->engines_ = this;
  e->name_ = name;
  e->host_ = host;
  e->alive_ = alive;
  e->executor_ =
      std::make_unique<SimEngine::Executor>(&world_->sim(), options_.control_latency, e->token_);
  e->metadata_ = std::make_shared<SimEngine::Metadata>(&directory_, alive);
  e->control_ = std::make_unique<SimEngine::Control>(this);

  mooncake::TransferEngineOptions o;
  o.local_server_name = name;
  o.metadata_server = "simulated metadata";
  o.protocol = "rdma";
  o.rdma_devices = rdma.devices;
  if (options_.max_mr_chunk > 0) rdma.max_mr_chunk = options_.max_mr_chunk;
  o.rdma = std::move(rdma);
  o.allow_shm = false;
  o.allow_local_memcpy = options_.allow_local_memcpy;
  o.allow_tcp = false;
  o.serve_tcp = false;
  o.copy_threads = 1;
  o.accepted_probe_interval = options_.accepted_probe_interval;
  o.segment_idle_timeout = options_.segment_idle_timeout;
  o.transfer_timeout = options_.transfer_timeout;
  o.connect_timeout = options_.connect_timeout;
  mooncake::TransferEngineSeams seams;
  seams.clock = world_->clock();
  seams.verbs = world_->verbs(host);
  seams.metadata = e->metadata_;
  seams.control = e->control_.get();
  seams.executor = e->executor_.get();
  SimEngine* raw = e.get();
  seams.wake = [raw] { raw->EnsurePolling(); };
  seams.host_id = world_->network().host_name(host);
  seams.instance = world_->sim().rng().Next64() | 1;
  absl::StatusOr<std::unique_ptr<mooncake::TransferEngine>> engine =
      mooncake::TransferEngine::Create(std::move(o), std::move(seams));
  if (!engine.ok()) return engine.status();
  e->engine_ = std::move(*engine);
  live_[name] = raw;
  std::weak_ptr<bool> token = e->token_;
  world_->sim().ScheduleRepeating(options_.maintain_period, "engine.maintain", [raw, token] {
    if (token.expired()) return false;
    if (!raw->alive_.expired()) raw->engine_->Maintain();
    return true;
  });
  return e;
}

}  // namespace sim
