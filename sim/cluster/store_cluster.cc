#include "sim/cluster/store_cluster.h"

#include <sys/mman.h>

#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"

namespace sim {

// MeteredDataPath counts the bytes of every request the engine finished successfully.
class StoreCluster::MeteredDataPath final : public mooncake::DataPath {
 public:
  MeteredDataPath(mooncake::TransferEngine* engine, uint64_t* bytes, std::weak_ptr<bool> alive)
      : inner_(engine, /*synchronous=*/false), bytes_(bytes), alive_(std::move(alive)) {}
  const std::string& local_segment() const override { return inner_.local_segment(); }
  int Closeness(const std::string& segment) override { return inner_.Closeness(segment); }
  void Transfer(std::vector<mooncake::DataRequest> requests,
                std::function<void(std::vector<absl::Status>)> done) override {
    auto lengths = std::make_shared<std::vector<uint64_t>>();
    lengths->reserve(requests.size());
    for (const mooncake::DataRequest& r : requests) lengths->push_back(r.length);
    inner_.Transfer(std::move(requests), [this, lengths, alive = alive_, done = std::move(done)](
                                             std::vector<absl::Status> results) {
      if (alive.expired()) return;  // the client died with the transfer in flight
      for (size_t i = 0; i < results.size(); ++i) {
        if (results[i].ok()) *bytes_ += (*lengths)[i];
      }
      done(std::move(results));
    });
  }
  uint64_t FenceInbound() override { return inner_.FenceInbound(); }

 private:
  mooncake::EngineDataPath inner_;
  uint64_t* const bytes_;
  const std::weak_ptr<bool> alive_;
};

namespace {
WorldOptions MakeWorldOptions(const StoreClusterOptions& o) {
  WorldOptions w;
  w.seed = o.seed;
  w.network = o.network;
  w.verbs.copy_data = o.copy_data;
  w.verbs.reuse_keys_after_restart = o.reuse_addresses;
  w.verbs.local_port_down = o.local_port_down;
  return w;
}
}  // namespace

StoreCluster::StoreCluster(const StoreClusterOptions& options)
    : options_(options), world_(MakeWorldOptions(options)), engines_(&world_, options.engine) {
  master_ = std::make_unique<SimMaster>(&world_.sim(), options_.master, options_.link);
}

StoreCluster::~StoreCluster() {
  for (auto& c : clients_) {
    c->alive.reset();
    c->core.reset();
    c->data.reset();
    c->rpc.reset();
    c->engine.reset();
  }
  for (auto& m : mappings_) munmap(m.first, m.second);
}

absl::Status StoreCluster::Start() {
  std::vector<std::string> nics;
  for (int n = 0; n < options_.nics; ++n) nics.push_back(absl::StrCat("erdma_", n));
  for (int h = 0; h < options_.hosts; ++h) {
    host_ids_.push_back(world_.AddHost(absl::StrCat("host", h), nics, options_.nic));
    host_up_.push_back(true);
    for (int r = 0; r < options_.ranks; ++r) {
      auto c = std::make_unique<Client>();
      c->index = static_cast<int>(clients_.size());
      c->host = h;
      c->rank = r;
      c->name = absl::StrCat("host", h, ":", 15000 + r);
      clients_.push_back(std::move(c));
    }
  }
  for (auto& c : clients_) {
    if (absl::Status s = StartClient(c.get()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status StoreCluster::StartClient(Client* c) {
  Simulator& sim = world_.sim();
  const size_t bytes = options_.segment_size + options_.buffer_size;
  void* mem = nullptr;
  if (options_.reuse_addresses && c->segment != nullptr) {
    // The new process maps its segment where the old one was; its pages start zeroed.
    mem = c->segment;
    madvise(mem, bytes, MADV_DONTNEED);
  } else {
    // Fresh memory for every incarnation (address space only until touched).
    mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
               -1, 0);
    if (mem == MAP_FAILED) return absl::ResourceExhaustedError("mmap of client memory failed");
    mappings_.emplace_back(mem, bytes);
  }
  c->segment = static_cast<char*>(mem);
  c->buffer = c->segment + options_.segment_size;
  c->id = {sim.rng().Next64() | 1, sim.rng().Next64()};
  ++c->incarnation;
  c->alive = std::make_shared<bool>(true);
  const HostId host = host_ids_[c->host];

  mooncake::RdmaOptions rdma = options_.rdma;
  rdma.devices.clear();
  for (int n = 0; n < options_.nics; ++n) rdma.devices.push_back(absl::StrCat("erdma_", n));
  absl::StatusOr<std::unique_ptr<SimEngine>> engine =
      engines_.Create(c->name, host, rdma, c->alive);
  if (!engine.ok()) return engine.status();
  c->engine = std::move(*engine);
  mooncake::TransferEngine& e = c->engine->engine();
  c->instance = e.instance();
  const uint64_t seg_addr = reinterpret_cast<uint64_t>(c->segment);
  if (absl::Status s = e.RegisterLocalMemory(c->segment, options_.segment_size); !s.ok()) return s;
  if (absl::Status s = e.RegisterLocalMemory(c->buffer, options_.buffer_size, "cpu:0",
                                             /*remote_accessible=*/false);
      !s.ok()) {
    return s;
  }

  std::weak_ptr<bool> alive = c->alive;
  c->rpc = std::make_unique<SimMasterRpc>(master_.get(), host, alive);
  c->data = std::make_unique<MeteredDataPath>(&e, &bytes_moved_, alive);
  mooncake::StoreCoreOptions core;
  core.client_id = c->id;
  core.segment = {c->name, seg_addr, options_.segment_size, c->instance};
  core.master = c->rpc.get();
  core.data = c->data.get();
  core.clock = world_.clock();
  core.timer = [&sim, alive](absl::Duration delay, std::function<void()> fn) {
    sim.Schedule(absl::ToInt64Nanoseconds(delay), "store.timer", [alive, fn = std::move(fn)] {
      if (!alive.expired()) fn();
    });
  };
  core.put_wait_timeout = options_.put_wait_timeout;
  core.replica_cache_entries = options_.replica_cache_entries;
  c->core = std::make_unique<mooncake::StoreCore>(std::move(core));
  MountWithRetry(c);
  mooncake::StoreCore* core_ptr = c->core.get();
  sim.ScheduleRepeating(options_.heartbeat_period, absl::StrCat("heartbeat.", c->name),
                        [alive, core_ptr] {
                          if (alive.expired()) return false;
                          core_ptr->Heartbeat([](absl::Status) {});
                          return true;
                        });
  return absl::OkStatus();
}

void StoreCluster::MountWithRetry(Client* c) {
  std::weak_ptr<bool> alive = c->alive;
  c->core->Mount([this, c, alive](absl::Status s) {
    if (s.ok() || alive.expired()) return;
    world_.sim().Schedule(options_.mount_retry, "mount.retry", [this, c, alive] {
      if (!alive.expired()) MountWithRetry(c);
    });
  });
}

void StoreCluster::CrashHost(int host) {
  if (!host_up_[host]) return;
  host_up_[host] = false;
  world_.network().CrashHost(host_ids_[host]);
  for (auto& c : clients_) {
    if (c->host != host || !c->up()) continue;
    c->alive.reset();  // every pending callback of this incarnation is dropped
    c->core.reset();
    c->data.reset();
    c->rpc.reset();
    c->engine.reset();
  }
}

absl::Status StoreCluster::RestartHost(int host) {
  if (host_up_[host]) return absl::OkStatus();
  world_.network().RestartHost(host_ids_[host]);
  host_up_[host] = true;
  for (auto& c : clients_) {
    if (c->host != host) continue;
    if (absl::Status s = StartClient(c.get()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace sim
