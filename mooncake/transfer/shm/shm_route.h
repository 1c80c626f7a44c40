// ShmRoute: the shared-memory route to a peer engine on the same host. Requests to the peer's
// memfd-backed buffers become one memcpy into or out of the peer's memory, mapped here through the
// peer's exporter (shared_memory.h). The route is built from one version of the peer's
// descriptor and the peer's buffer generation at that time; once the generation moves (the peer
// registered or freed memory) or the peer dies, the route reports itself unhealthy and the engine
// builds a new one.
#ifndef MOONCAKE_TRANSFER_SHM_SHM_ROUTE_H_
#define MOONCAKE_TRANSFER_SHM_SHM_ROUTE_H_

#include <memory>

#include "mooncake/transfer/segment_descriptor.h"
#include "mooncake/transfer/shm/shared_memory.h"
#include "mooncake/transfer/transport.h"

namespace mooncake {

class ShmRoute final : public Route {
 public:
  // `desc` must be at least as new as `generation` (read the generation first).
  ShmRoute(std::shared_ptr<ShmPeer> peer, std::shared_ptr<const SegmentDescriptor> desc,
           uint64_t generation)
      : peer_(std::move(peer)), desc_(std::move(desc)), generation_(generation) {}
  RouteKind kind() const override { return RouteKind::kShm; }
  bool Serves(uint64_t remote, uint64_t length) const override;
  bool Healthy() override;
  void Submit(const TransferOp& op, SubmitContext* ctx) override;

 private:
  const std::shared_ptr<ShmPeer> peer_;
  const std::shared_ptr<const SegmentDescriptor> desc_;
  const uint64_t generation_;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_SHM_SHM_ROUTE_H_
