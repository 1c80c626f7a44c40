#include "mooncake/transfer/transport.h"

#include <string.h>

#include <atomic>

#include "absl/synchronization/blocking_counter.h"
#include "mooncake/common/executor.h"
#include "mooncake/transfer/memory_registry.h"

namespace mooncake {

const char* RouteKindName(RouteKind kind) {
  switch (kind) {
    case RouteKind::kLocal:
      return "local";
    case RouteKind::kShm:
      return "shm";
    case RouteKind::kTcp:
      return "tcp";
    case RouteKind::kRdma:
      return "rdma";
  }
  return "?";
}

void CopyRunner::Run(TransferBatch* batch, const std::vector<Copy>& copies) const {
  std::vector<absl::Status> results(copies.size());
  {
    // Every range stays registered until the copies are done: Unregister waits for the view.
    MemoryRegistry::ReadView view(*registry_);
    std::vector<Chunk> chunks;
    for (size_t i = 0; i < copies.size(); ++i) {
      const Copy& c = copies[i];
      absl::Status s = view.Find(reinterpret_cast<uint64_t>(c.local), c.length, false).status();
      if (s.ok() && c.check_remote) {
        s = view.Find(reinterpret_cast<uint64_t>(c.mapped), c.length, true).status();
      }
      if (!s.ok()) {
        results[i] = std::move(s);
        continue;
      }
      char* dst = c.write ? c.mapped : c.local;
      const char* src = c.write ? c.local : c.mapped;
      const bool overlap = dst < src + c.length && src < dst + c.length;
      if (overlap) {
        memmove(dst, src, c.length);  // only a request within one engine's own memory
      } else {
        for (uint64_t off = 0; off < c.length; off += kChunk) {
          chunks.push_back({dst + off, src + off, std::min(kChunk, c.length - off)});
        }
      }
    }
    ParallelCopy(chunks);
  }
  // After the view is released: a completion callback may submit again (and read the registry).
  for (size_t i = 0; i < copies.size(); ++i) batch->Finish(copies[i].index, results[i]);
}

void CopyRunner::ParallelCopy(const std::vector<Chunk>& chunks) const {
  uint64_t total = 0;
  for (const Chunk& c : chunks) total += c.length;
  std::atomic<size_t> next{0};
  auto work = [&chunks, &next] {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < chunks.size();) {
      memcpy(chunks[i].dst, chunks[i].src, chunks[i].length);
    }
  };
  // Small batches are not worth waking a helper.
  const int helpers = helpers_ == nullptr || total < kParallelThreshold
                          ? 0
                          : std::min<int>(threads_ - 1, static_cast<int>(chunks.size()) - 1);
  if (helpers <= 0) {
    work();
    return;
  }
  absl::BlockingCounter pending(helpers);
  for (int h = 0; h < helpers; ++h) {
    helpers_->Schedule([&work, &pending] {
      work();
      pending.DecrementCount();
    });
  }
  work();
  pending.Wait();
}

void SubmitContext::AddCopy(const CopyRunner::Copy& copy, std::shared_ptr<const void> keep_alive) {
  copies_.push_back(copy);
  if (keep_alive != nullptr && (keep_alive_.empty() || keep_alive_.back() != keep_alive)) {
    keep_alive_.push_back(std::move(keep_alive));
  }
}

void SubmitContext::Finish(const CopyRunner& copier) {
  for (auto& [route, pending] : pendings_) pending->Flush();  // network first: it overlaps copies
  pendings_.clear();
  if (!copies_.empty()) copier.Run(batch_.get(), copies_);
  copies_.clear();
  keep_alive_.clear();
}

}  // namespace mooncake
