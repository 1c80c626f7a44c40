// TcpRoute: the TCP route to a peer engine, over the peer's pooled lanes (TcpPeer). Requests of one
// Submit are sliced as they come and handed to the lanes together at the end, so a batch leaves in
// as few sendmsg calls as the lanes can coalesce.
#ifndef MOONCAKE_TRANSFER_TCP_TCP_ROUTE_H_
#define MOONCAKE_TRANSFER_TCP_TCP_ROUTE_H_

#include <memory>

#include "mooncake/transfer/tcp/tcp_transport.h"
#include "mooncake/transfer/transport.h"

namespace mooncake {

class TcpRoute final : public Route {
 public:
  explicit TcpRoute(std::shared_ptr<TcpPeer> peer) : peer_(std::move(peer)) {}
  RouteKind kind() const override { return RouteKind::kTcp; }
  bool Serves(uint64_t, uint64_t) const override { return true; }
  void Submit(const TransferOp& op, SubmitContext* ctx) override;
  const std::shared_ptr<TcpPeer>& peer() const { return peer_; }

 private:
  const std::shared_ptr<TcpPeer> peer_;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TCP_TCP_ROUTE_H_
