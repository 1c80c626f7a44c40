#include "mooncake/transfer/rdma/rdma_route.h"

namespace mooncake {
namespace {

// Wakes the poller once, after every request of the Submit is queued.
class PendingWake final : public SubmitContext::Pending {
 public:
  explicit PendingWake(std::function<void()> wake) : wake_(std::move(wake)) {}
  void Flush() override { wake_(); }

 private:
  const std::function<void()> wake_;
};

}  // namespace

void RdmaRoute::Submit(const TransferOp& op, SubmitContext* ctx) {
  transport_->Submit(ctx->batch(), op.index, op.write, reinterpret_cast<uint64_t>(op.local),
                     op.remote, op.length, desc_);
  if (wake_) {
    ctx->PendingFor<PendingWake>(transport_,
                                 [this] { return std::make_unique<PendingWake>(wake_); });
  }
}

}  // namespace mooncake
