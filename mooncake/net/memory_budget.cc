#include "mooncake/net/memory_budget.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {

bool MemoryBudget::Reservation::Grow(uint64_t n) {
  uint64_t used = budget_->used_.load(std::memory_order_relaxed);
  do {
    if (n > budget_->limit_ || used > budget_->limit_ - n) {
      budget_->refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  } while (!budget_->used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
  bytes_ += n;
  return true;
}

void MemoryBudget::Reservation::Reset() {
  if (bytes_ == 0) return;
  budget_->used_.fetch_sub(bytes_, std::memory_order_relaxed);
  bytes_ = 0;
}

absl::Status RecvPayload(int fd, uint64_t length, MemoryBudget::Reservation* held,
                         std::string* out) {
  // Grow in steps: the first 64 KiB at once (most payloads are small), then doubling, so a claimed
  // length costs nothing until its bytes are actually here.
  constexpr uint64_t kFirstStep = 64 << 10;
  out->clear();
  held->Reset();
  uint64_t step = kFirstStep;
  while (out->size() < length) {
    const uint64_t n = std::min<uint64_t>(step, length - out->size());
    if (!held->Grow(n)) {
      // Skip the rest so the stream stays in step; the bytes read so far are dropped.
      const uint64_t rest = length - out->size();
      held->Reset();
      std::string().swap(*out);
      if (absl::Status s = DiscardBytes(fd, rest); !s.ok()) return s;
      return absl::ResourceExhaustedError(
          absl::StrCat("request memory budget exhausted (", length, " bytes asked)"));
    }
    const size_t at = out->size();
    out->resize(at + n);
    if (absl::Status s = RecvAll(fd, out->data() + at, n); !s.ok()) return s;
    step = std::min<uint64_t>(step * 2, 4 << 20);
  }
  return absl::OkStatus();
}

}  // namespace mooncake
