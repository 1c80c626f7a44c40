// RdmaCluster: the production RdmaTransport on simulated hosts. Each host of a sim::World gets an
// RdmaTransport over its SimVerbs (the Verbs seam) and the simulated clock, one registered memory
// region, and a Poll() driven by the simulator. Rail handshakes go straight to the peer transport's
// Accept() (in production they travel over the TCP control port).
//
//   sim::RdmaClusterOptions o;  o.hosts = 2;  o.nics = {"erdma_0", "erdma_1"};
//   sim::RdmaCluster c(o);
//   c.Init();
//   auto batch = std::make_shared<mooncake::TransferBatch>(1);
//   c.transport(0).Submit(batch, 0, /*write=*/true, c.addr(0, 0), c.addr(1, 0), 1 << 20,
//                         c.descriptor(1));
//   c.RunUntilDone(*batch, sim::kSecond);
#ifndef SIM_RDMA_RDMA_CLUSTER_H_
#define SIM_RDMA_RDMA_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "mooncake/transfer/rdma/rdma_transport.h"
#include "mooncake/transfer/transfer_batch.h"
#include "sim/verbs/world.h"

namespace sim {

struct RdmaClusterOptions {
  uint64_t seed = 1;
  int hosts = 2;
  std::vector<std::string> nics = {"erdma_0", "erdma_1"};
  NicSpec nic;  // rate, latency, MTU; the name is taken from `nics`
  // Bytes of registered memory per host. With copy_data = false it is address space only.
  uint64_t memory_per_host = 64 << 20;
  bool copy_data = true;
  // How a QP behaves when its own NIC is down (hardware: packets lost; rxe: fails at send).
  SimVerbsOptions::LocalPortDown local_port_down = SimVerbsOptions::LocalPortDown::kPacketsLost;
  mooncake::RdmaOptions rdma;  // devices are filled in from `nics`
  SimTime poll_period = 2 * kMicrosecond;
};

class RdmaCluster {
 public:
  explicit RdmaCluster(const RdmaClusterOptions& options);
  ~RdmaCluster();
  RdmaCluster(const RdmaCluster&) = delete;
  RdmaCluster& operator=(const RdmaCluster&) = delete;

  // Init starts every transport, registers each host's memory and begins polling.
  absl::Status Init();

  World& world() { return world_; }
  int hosts() const { return static_cast<int>(hosts_.size()); }
  mooncake::RdmaTransport& transport(int host) { return *hosts_[host]->transport; }
  const std::string& name(int host) const { return hosts_[host]->name; }
  HostId host_id(int host) const { return hosts_[host]->id; }
  // addr is the absolute address of byte `offset` of the host's registered memory.
  uint64_t addr(int host, uint64_t offset) const { return hosts_[host]->base + offset; }
  char* memory(int host) { return reinterpret_cast<char*>(hosts_[host]->base); }
  uint64_t memory_size() const { return options_.memory_per_host; }
  // descriptor is what the host would publish (devices, rkeys), captured at Init or Refresh.
  std::shared_ptr<const mooncake::SegmentDescriptor> descriptor(int host) const {
    return hosts_[host]->descriptor;
  }
  void RefreshDescriptor(int host);

  // RunUntilDone runs the simulation until `batch` completes or `timeout` passes.
  bool RunUntilDone(const mooncake::TransferBatch& batch, SimTime timeout);

 private:
  struct Host {
    std::string name;
    HostId id = kNoId;
    uint64_t base = 0;
    std::unique_ptr<mooncake::RdmaTransport> transport;
    std::shared_ptr<const mooncake::SegmentDescriptor> descriptor;
  };
  class Handshake;

  const RdmaClusterOptions options_;
  World world_;
  std::unique_ptr<Handshake> handshake_;
  std::vector<std::unique_ptr<Host>> hosts_;
};

}  // namespace sim

#endif  // SIM_RDMA_RDMA_CLUSTER_H_
