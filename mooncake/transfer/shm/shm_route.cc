#include "mooncake/transfer/shm/shm_route.h"

namespace mooncake {

bool ShmRoute::Serves(uint64_t remote, uint64_t length) const {
  const BufferDesc* b = desc_->FindBuffer(remote, length);
  return b != nullptr && b->shm;
}

bool ShmRoute::Healthy() { return peer_->Alive() && peer_->Generation() == generation_; }

void ShmRoute::Submit(const TransferOp& op, SubmitContext* ctx) {
  const BufferDesc* b = desc_->FindBuffer(op.remote, op.length);  // Serves() held
  absl::StatusOr<char*> mapped = peer_->Translate(b->addr, b->length, op.remote, op.length);
  if (!mapped.ok()) {
    ctx->batch()->Finish(op.index, mapped.status());
    return;
  }
  CopyRunner::Copy copy;
  copy.index = op.index;
  copy.write = op.write;
  copy.local = op.local;
  copy.mapped = *mapped;
  copy.length = op.length;
  ctx->AddCopy(copy, peer_);  // the mapping outlives the copy
}

}  // namespace mooncake
