// StoreCluster: the whole store in one simulated world. The real MasterService behind simulated
// RPC (SimMaster), and on every host `ranks` store clients, each a production StoreCore with its
// own segment and buffer memory, its own production TransferEngine (sim_engine.h: routing,
// descriptor refresh, incarnation and range checks, the RdmaTransport on the host's SimVerbs over
// all the host's NICs) behind the production EngineDataPath, and its heartbeats, all on the
// simulator's clock. The seams (MasterChannel, the engine's seams, Verbs, Clock, Timer) are the
// only substitutions.
//
//   sim::StoreClusterOptions o;  o.hosts = 3;  o.ranks = 2;  o.nics = 2;
//   sim::StoreCluster c(o);
//   c.Start();
//   c.client(0).core->BatchPut(keys, buffers, {}, [](std::vector<int> rc) { ... });
//   c.world().RunFor([&] { return done; }, sim::kSecond);
//   c.CrashHost(1);  ...  c.RestartHost(1);
#ifndef SIM_CLUSTER_STORE_CLUSTER_H_
#define SIM_CLUSTER_STORE_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "mooncake/master/master_service.h"
#include "mooncake/store/engine_data_path.h"
#include "mooncake/store/store_core.h"
#include "mooncake/transfer/rdma/rdma_transport.h"
#include "sim/cluster/sim_engine.h"
#include "sim/cluster/sim_master_rpc.h"
#include "sim/verbs/world.h"

namespace sim {

struct StoreClusterOptions {
  uint64_t seed = 1;
  int hosts = 3;
  int ranks = 2;  // store clients per host (SGLang: one per TP rank)
  int nics = 2;   // per host: erdma_0 .. erdma_{nics-1}
  NicSpec nic;
  uint64_t segment_size = 4 << 20;  // each client's contribution to the pool
  uint64_t buffer_size = 4 << 20;   // each client's registered local buffer
  mooncake::MasterServiceOptions master;
  SimMasterOptions link;
  SimTime heartbeat_period = 100 * kMillisecond;
  SimTime mount_retry = 50 * kMillisecond;
  mooncake::RdmaOptions rdma;  // devices are filled in
  SimEngineOptions engine;
  absl::Duration put_wait_timeout = absl::Milliseconds(500);
  size_t replica_cache_entries = 16384;  // StoreCoreOptions::replica_cache_entries
  // A restarted client maps its memory at the addresses its previous incarnation used, and its
  // NICs hand out the same memory keys again (SimVerbsOptions::reuse_keys_after_restart).
  bool reuse_addresses = false;
  // How QPs fail when their own NIC is down (SimVerbsOptions::LocalPortDown).
  SimVerbsOptions::LocalPortDown local_port_down = SimVerbsOptions::LocalPortDown::kPacketsLost;
  // false: the NICs move no payload bytes (timing only; client memory stays untouched address
  // space), for throughput benchmarks at sizes no machine could hold.
  bool copy_data = true;
  NetworkOptions network;
};

class StoreCluster {
 public:
  struct Client {
    int index = 0;
    int host = 0;  // host index
    int rank = 0;
    std::string name;  // segment name, stable across restarts
    mooncake::ClientId id;
    uint64_t incarnation = 0;
    uint64_t instance = 0;  // published in the descriptor and mounted with the segment
    char* segment = nullptr;
    char* buffer = nullptr;
    std::shared_ptr<bool> alive;  // null while the host is down
    std::unique_ptr<SimEngine> engine;
    std::unique_ptr<SimMasterRpc> rpc;
    std::unique_ptr<mooncake::DataPath> data;
    std::unique_ptr<mooncake::StoreCore> core;
    bool up() const { return alive != nullptr; }
  };

  explicit StoreCluster(const StoreClusterOptions& options);
  ~StoreCluster();
  StoreCluster(const StoreCluster&) = delete;
  StoreCluster& operator=(const StoreCluster&) = delete;

  // Start brings every client up (transport, registration, mount with retries, heartbeats).
  absl::Status Start();

  World& world() { return world_; }
  Simulator& sim() { return world_.sim(); }
  SimMaster& master() { return *master_; }
  const StoreClusterOptions& options() const { return options_; }
  int num_hosts() const { return options_.hosts; }
  int num_clients() const { return static_cast<int>(clients_.size()); }
  Client& client(int i) { return *clients_[i]; }
  HostId host_id(int host) const { return host_ids_[host]; }
  bool host_up(int host) const { return host_up_[host]; }

  // CrashHost kills a host: its clients vanish mid-operation (no callback of theirs runs again),
  // their memory is gone. RestartHost brings it back with fresh clients and empty segments.
  void CrashHost(int host);
  absl::Status RestartHost(int host);

  // Bytes moved by every client's data path so far (dead incarnations included).
  uint64_t bytes_moved() const { return bytes_moved_; }
  SimEngines& engines() { return engines_; }

 private:
  class MeteredDataPath;
  absl::Status StartClient(Client* c);
  void MountWithRetry(Client* c);

  const StoreClusterOptions options_;
  World world_;
  SimEngines engines_;
  std::unique_ptr<SimMaster> master_;
  std::vector<HostId> host_ids_;
  std::vector<bool> host_up_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<std::pair<void*, size_t>> mappings_;  // every client memory ever mapped
  uint64_t bytes_moved_ = 0;
};

}  // namespace sim

#endif  // SIM_CLUSTER_STORE_CLUSTER_H_
