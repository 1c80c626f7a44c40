// Transport routes: the ways the TransferEngine moves bytes to one peer segment. Each transport
// (same-process memcpy, same-host shared memory, TCP, RDMA) builds a Route per peer from the
// peer's descriptor; the engine validates every request once (local range registered, remote range
// inside the peer's published buffers, the peer the incarnation the caller named) and hands it to
// the first route of the peer that serves its remote range. See docs/architecture.md.
//
//   std::shared_ptr<Route> route = view.RouteFor(remote, length);   // engine side
//   route->Submit(batch, {index, is_write, local, remote, length}, &ctx);
//   ...
//   ctx.Finish();   // flushes queued network work, then runs the gathered copies
#ifndef MOONCAKE_TRANSFER_TRANSPORT_H_
#define MOONCAKE_TRANSFER_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "mooncake/transfer/transfer_batch.h"

namespace mooncake {

class MemoryRegistry;
class Executor;

// RouteKind names a route, fastest first.
enum class RouteKind { kLocal, kShm, kTcp, kRdma };
const char* RouteKindName(RouteKind kind);

// TransferOp is one validated request as a route sees it.
struct TransferOp {
  size_t index = 0;  // in the batch
  bool write = false;
  char* local = nullptr;
  uint64_t remote = 0;
  uint64_t length = 0;
};

// CopyRunner copies gathered same-process and shared-memory requests, large batches on several
// threads (one thread's memcpy is bound by its own memory latency, not by the memory bus). Every
// range is checked again under the registry's read view, so nothing unregistered meanwhile is
// touched, and stays registered until the copies are done.
class CopyRunner {
 public:
  struct Copy {
    size_t index = 0;
    bool write = false;
    char* local = nullptr;
    char* mapped = nullptr;  // where the remote range is in this process
    uint64_t length = 0;
    // Same process: the remote range is this engine's own memory and must still be registered.
    bool check_remote = false;
  };
  // `registry` is the engine's; `helpers` (may be null) run chunks beside the calling thread, up
  // to `threads` threads in all.
  CopyRunner(const MemoryRegistry* registry, Executor* helpers, int threads)
      : registry_(registry), helpers_(helpers), threads_(threads) {}
  // Run copies every request whose ranges are still registered and finishes each in `batch`.
  void Run(TransferBatch* batch, const std::vector<Copy>& copies) const;

 private:
  static constexpr uint64_t kChunk = 1 << 20;
  static constexpr uint64_t kParallelThreshold = 1 << 20;
  static_assert(kParallelThreshold >= kChunk, "parallel copies need several chunks");
  struct Chunk {
    char* dst;
    const char* src;
    uint64_t length;
  };
  void ParallelCopy(const std::vector<Chunk>& chunks) const;

  const MemoryRegistry* const registry_;
  Executor* const helpers_;
  const int threads_;
};

// SubmitContext is what one TransferEngine::Submit call gathers before starting it: copies (run
// together after the network work is on its way, so they overlap it) and routes' queued network
// work (flushed once per route at the end).
class SubmitContext {
 public:
  // Pending is a route's queued work within one Submit.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void Flush() = 0;
  };

  explicit SubmitContext(std::shared_ptr<TransferBatch> batch) : batch_(std::move(batch)) {}
  const std::shared_ptr<TransferBatch>& batch() const { return batch_; }

  // AddCopy queues a copy; `keep_alive` (e.g. a peer's mapping) lives until the copy is done.
  void AddCopy(const CopyRunner::Copy& copy, std::shared_ptr<const void> keep_alive = nullptr);

  // PendingFor returns the route's Pending in this context, made by `make` on first use.
  template <typename T, typename Make>
  T* PendingFor(const void* route, Make make) {
    for (auto& [key, pending] : pendings_) {
      if (key == route) return static_cast<T*>(pending.get());
    }
    pendings_.emplace_back(route, make());
    return static_cast<T*>(pendings_.back().second.get());
  }

  // Finish flushes every Pending (in first-use order), then runs the copies with `copier`.
  void Finish(const CopyRunner& copier);

 private:
  std::shared_ptr<TransferBatch> batch_;
  std::vector<CopyRunner::Copy> copies_;
  std::vector<std::shared_ptr<const void>> keep_alive_;
  std::vector<std::pair<const void*, std::unique_ptr<Pending>>> pendings_;
};

// Route is one way to reach one peer segment, built from one version of the peer's descriptor.
// Routes are shared by every request to the peer and are thread-safe.
class Route {
 public:
  virtual ~Route() = default;
  virtual RouteKind kind() const = 0;
  // Serves reports whether this route can move the validated range [remote, +length) (shared
  // memory: only memfd-backed buffers).
  virtual bool Serves(uint64_t remote, uint64_t length) const = 0;
  // Healthy is false once the route knows its peer is gone; the engine then re-reads the peer.
  virtual bool Healthy() { return true; }
  // Submit starts `op` of ctx->batch(); completion is reported through the batch, exactly once.
  virtual void Submit(const TransferOp& op, SubmitContext* ctx) = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TRANSPORT_H_
