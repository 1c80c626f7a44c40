// RdmaRoute: the RDMA route to a peer engine: requests go to the RdmaTransport with the peer's
// descriptor (its buffers' rkeys, its NICs), which slices them (also at MR chunk boundaries) and
// stripes the slices over the rails. Its progress runs wherever the engine polls the transport;
// the route wakes that poller once per Submit.
#ifndef MOONCAKE_TRANSFER_RDMA_RDMA_ROUTE_H_
#define MOONCAKE_TRANSFER_RDMA_RDMA_ROUTE_H_

#include <functional>
#include <memory>

#include "mooncake/transfer/rdma/rdma_transport.h"
#include "mooncake/transfer/transport.h"

namespace mooncake {

class RdmaRoute final : public Route {
 public:
  // `transport` must outlive the route; `wake` (may be empty) is called after queuing work.
  RdmaRoute(RdmaTransport* transport, std::shared_ptr<const SegmentDescriptor> desc,
            std::function<void()> wake)
      : transport_(transport), desc_(std::move(desc)), wake_(std::move(wake)) {}
  RouteKind kind() const override { return RouteKind::kRdma; }
  bool Serves(uint64_t, uint64_t) const override { return true; }
  void Submit(const TransferOp& op, SubmitContext* ctx) override;

 private:
  RdmaTransport* const transport_;
  const std::shared_ptr<const SegmentDescriptor> desc_;
  const std::function<void()> wake_;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_RDMA_RDMA_ROUTE_H_
