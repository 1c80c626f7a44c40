// SimEngines: the production mooncake::TransferEngine inside the simulator. Every engine runs with
// its seams filled in from the simulated world (docs/architecture.md, "Layers and seams") and no
// thread or socket of its own:
//   clock     the simulator's
//   verbs     its host's SimVerbs (the RDMA route runs the production RdmaTransport on them)
//   metadata  a directory every engine of the world shares (SimMetadataDirectory)
//   control   direct calls into the peer engine (descriptor fetch, rail handshakes, liveness
//             probes) after a simulated control-path delay; a crashed host does not answer, a live
//             host without the engine refuses (as a closed port does)
//   executor  simulated events (rail handshakes, probes)
//   progress  Poll() as a repeating event while the engine has RDMA work, Maintain() periodically
// Only the engine's own routes run: same-engine copies (memcpy) and RDMA, also between two
// engines of one host (loopback through the NIC). Shared memory and TCP need real sockets and
// are tested for real in mooncake/transfer.
//
//   sim::SimEngines engines(&world, sim::SimEngineOptions());
//   auto alive = std::make_shared<bool>(true);
//   auto e = engines.Create("host0:15000", host, rdma_options, alive);
//   (*e)->engine().RegisterLocalMemory(buf, len);
//   (*e)->engine().Submit(requests, [](const mooncake::TransferBatch& b) { ... });
#ifndef SIM_CLUSTER_SIM_ENGINE_H_
#define SIM_CLUSTER_SIM_ENGINE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mooncake/common/executor.h"
#include "mooncake/metadata/metadata_client.h"
#include "mooncake/transfer/peer_control.h"
#include "mooncake/transfer/rdma/rdma_transport.h"
#include "mooncake/transfer/transfer_engine.h"
#include "sim/verbs/world.h"

namespace sim {

struct SimEngineOptions {
  SimTime poll_period = 4 * kMicrosecond;        // Poll() while RDMA work is in flight
  SimTime maintain_period = 100 * kMillisecond;  // Maintain()
  SimTime control_latency = 20 * kMicrosecond;   // a control request's round trip
  absl::Duration accepted_probe_interval = absl::Milliseconds(500);
  absl::Duration segment_idle_timeout = absl::Minutes(5);
  // The synchronous Transfer's bound (in wall time: it blocks the simulator's thread).
  absl::Duration transfer_timeout = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(3);
  uint64_t max_mr_chunk = 0;  // RdmaOptions::max_mr_chunk for every engine
  // false: an engine's requests to its own memory go through its NIC (loopback) instead of
  // memcpy, so a benchmark without payload copies touches no memory (and charges them to the NIC).
  bool allow_local_memcpy = true;
};

// SimMetadataDirectory is the metadata service of a simulated world: a plain key/value map.
using SimMetadataDirectory = std::map<std::string, std::string>;

class SimEngines;

// SimEngine is one engine and the seams it runs on. Destroying it destroys the engine first.
class SimEngine {
 public:
  ~SimEngine();
  mooncake::TransferEngine& engine() { return *engine_; }
  const std::string& name() const { return name_; }
  HostId host() const { return host_; }

 private:
  friend class SimEngines;
  class Executor;
  class Metadata;
  class Control;
  SimEngine() = default;
  void EnsurePolling();

  SimEngines* engines_ = nullptr;
  std::string name_;
  HostId host_ = kNoId;
  std::weak_ptr<bool> alive_;                                   // the process's life
  std::shared_ptr<bool> token_ = std::make_shared<bool>(true);  // this object's life
  bool polling_ = false;
  std::unique_ptr<Executor> executor_;
  std::shared_ptr<Metadata> metadata_;
  std::unique_ptr<Control> control_;
  std::unique_ptr<mooncake::TransferEngine> engine_;
};

class SimEngines {
 public:
  // `world` must outlive this object and every engine it made.
  SimEngines(World* world, const SimEngineOptions& options);

  // Create starts engine `name` ("host:port") on `host`, with one RDMA device per entry of
  // `rdma.devices`. `alive` is the life of the engine's process: once it expires the engine talks
  // to no one (no metadata writes, no control answers), as a crashed process.
  absl::StatusOr<std::unique_ptr<SimEngine>> Create(const std::string& name, HostId host,
                                                    mooncake::RdmaOptions rdma,
                                                    std::weak_ptr<bool> alive);

  World& world() { return *world_; }
  const SimEngineOptions& options() const { return options_; }
  SimMetadataDirectory& directory() { return directory_; }

 private:
  friend class SimEngine;
  World* const world_;
  const SimEngineOptions options_;
  SimMetadataDirectory directory_;
  // Live engines by segment name (their control channel's other end).
  std::map<std::string, SimEngine*> live_;
};

}  // namespace sim

#endif  // SIM_CLUSTER_SIM_ENGINE_H_
