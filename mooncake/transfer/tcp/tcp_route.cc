#include "mooncake/transfer/tcp/tcp_route.h"

#include <vector>

namespace mooncake {
namespace {

// The slices one Submit queues for one peer, sent at the end of the Submit.
class PendingSlices final : public SubmitContext::Pending {
 public:
  explicit PendingSlices(std::shared_ptr<TcpPeer> peer) : peer_(std::move(peer)) {}
  void Flush() override { peer_->Send(std::move(slices)); }
  std::vector<TcpSlice> slices;

 private:
  const std::shared_ptr<TcpPeer> peer_;
};

}  // namespace

void TcpRoute::Submit(const TransferOp& op, SubmitContext* ctx) {
  PendingSlices* pending = ctx->PendingFor<PendingSlices>(
      peer_.get(), [this] { return std::make_unique<PendingSlices>(peer_); });
  peer_->Slice(ctx->batch(), op.index, op.write, op.local, op.remote, op.length, &pending->slices);
}

}  // namespace mooncake
