#include "sim/rdma/rdma_cluster.h"

#include <sys/mman.h>

#include "absl/strings/str_cat.h"

namespace sim {

class RdmaCluster::Handshake final : public mooncake::RdmaHandshake {
 public:
  explicit Handshake(RdmaCluster* cluster) : cluster_(cluster) {}
  absl::StatusOr<mooncake::EndpointInfo> Exchange(const std::string& peer,
                                                  const mooncake::EndpointInfo& mine) override {
    for (auto& h : cluster_->hosts_) {
      if (h->name == peer) return h->transport->Accept(mine);
    }
    return absl::NotFoundError(absl::StrCat("no simulated host ", peer));
  }

 private:
  RdmaCluster* const cluster_;
};

namespace {
WorldOptions MakeWorldOptions(const RdmaClusterOptions& o) {
  WorldOptions w;
  w.seed = o.seed;
  w.verbs.copy_data = o.copy_data;
  w.verbs.local_port_down = o.local_port_down;
  return w;
}
}  // namespace

RdmaCluster::RdmaCluster(const RdmaClusterOptions& options)
    : options_(options), world_(MakeWorldOptions(options)) {
  handshake_ = std::make_unique<Handshake>(this);
}

RdmaCluster::~RdmaCluster() {
  for (auto& h : hosts_) h->transport.reset();
  for (auto& h : hosts_) {
    if (h->base != 0) munmap(reinterpret_cast<void*>(h->base), options_.memory_per_host);
  }
}

absl::Status RdmaCluster::Init() {
  for (int i = 0; i < options_.hosts; ++i) {
    auto h = std::make_unique<Host>();
    h->name = absl::StrCat("host", i);
    h->id = world_.AddHost(h->name, options_.nics, options_.nic);
    // Address space only until touched; copy_data = false never touches it.
    void* mem = mmap(nullptr, options_.memory_per_host, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return absl::ResourceExhaustedError("mmap of host memory failed");
    h->base = reinterpret_cast<uint64_t>(mem);
    mooncake::RdmaOptions rdma = options_.rdma;
    rdma.devices = options_.nics;
    h->transport = std::make_unique<mooncake::RdmaTransport>(world_.verbs(h->id), world_.clock(),
                                                             handshake_.get(), h->name, rdma);
    hosts_.push_back(std::move(h));
  }
  for (int i = 0; i < hosts(); ++i) {
    Host& h = *hosts_[i];
    if (absl::Status s = h.transport->Init(); !s.ok()) return s;
    absl::Status s = h.transport->RegisterMemory(h.base, options_.memory_per_host, true);
    if (!s.ok()) return s;
    RefreshDescriptor(i);
    mooncake::RdmaTransport* t = h.transport.get();
    world_.sim().ScheduleRepeating(options_.poll_period, absl::StrCat("poll.", h.name), [t] {
      t->Poll();
      return true;
    });
  }
  return absl::OkStatus();
}

void RdmaCluster::RefreshDescriptor(int host) {
  auto d = std::make_shared<mooncake::SegmentDescriptor>();
  d->name = hosts_[host]->name;
  hosts_[host]->transport->FillDescriptor(d.get());
  hosts_[host]->descriptor = std::move(d);
}

bool RdmaCluster::RunUntilDone(const mooncake::TransferBatch& batch, SimTime timeout) {
  return world_.RunFor([&batch] { return batch.Done(); }, timeout);
}

}  // namespace sim
