// MemoryRegistry: the set of memory ranges registered with a TransferEngine. Every address a peer
// or the local caller names is checked here before a byte moves.
//
// Registration records the range only; it never touches the pages (pools can be hundreds of GB).
// Ranges never overlap. A range is accessed either under the registry's shared lock (ReadView, for
// memory copies) or through a Pin (for socket I/O, which can take long: a pin holds only its own
// buffer, so registering or unregistering other buffers never waits for a slow peer). Unregister
// waits until no copy or pin of the buffer is left: after it returns, no transfer touches that
// memory again.
#ifndef MOONCAKE_TRANSFER_MEMORY_REGISTRY_H_
#define MOONCAKE_TRANSFER_MEMORY_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace mooncake {

struct RegisteredBuffer {
  uint64_t addr = 0;
  uint64_t length = 0;
  std::string location = "cpu:0";  // Mooncake's location tag (NUMA/GPU)
  bool remote_accessible = true;   // peers may READ/WRITE it
  int shm_fd = -1;                 // memfd backing it (same-host peers can map it), or -1
};

class MemoryRegistry {
 public:
  MemoryRegistry() = default;
  MemoryRegistry(const MemoryRegistry&) = delete;
  MemoryRegistry& operator=(const MemoryRegistry&) = delete;

  // Register adds a buffer. Fails with INVALID_PARAMS for a null or empty range, address overflow,
  // or overlap with a registered buffer.
  absl::Status Register(const RegisteredBuffer& buffer);

  // Unregister removes the buffer that starts at `addr`, waiting for in-progress accesses to
  // finish. Returns the removed buffer, or INVALID_PARAMS if no buffer starts there.
  absl::StatusOr<RegisteredBuffer> Unregister(uint64_t addr);

  // Find returns the buffer wholly containing [addr, addr + length), or an INVALID_PARAMS error
  // that describes the range. `remote` additionally requires the buffer to be remote-accessible.
  absl::StatusOr<RegisteredBuffer> Find(uint64_t addr, uint64_t length, bool remote) const;

  // Pin keeps the buffer wholly containing [addr, addr + length) registered while it lives
  // (Unregister of that buffer waits for it). Movable; an empty Pin holds nothing.
  class Pin {
   public:
    Pin() = default;
    Pin(Pin&& other) noexcept : registry_(other.registry_), addr_(other.addr_) {
      other.registry_ = nullptr;
    }
    Pin& operator=(Pin&& other) noexcept;
    ~Pin() { Release(); }
    void Release();

   private:
    friend class MemoryRegistry;
    Pin(const MemoryRegistry* registry, uint64_t addr) : registry_(registry), addr_(addr) {}
    const MemoryRegistry* registry_ = nullptr;
    uint64_t addr_ = 0;  // the pinned buffer's start
  };
  // PinRange pins the buffer holding the range, or fails like Find.
  absl::StatusOr<Pin> PinRange(uint64_t addr, uint64_t length, bool remote) const;

  // Snapshot returns all buffers, ordered by address.
  std::vector<RegisteredBuffer> Snapshot() const;

  // remote_refusals counts remote-access lookups (Find/PinRange with remote = true: a peer's
  // READ, WRITE or shm handshake) refused because the range is not wholly inside a registered
  // remote-accessible buffer. Such a request moves no byte.
  uint64_t remote_refusals() const { return remote_refusals_.load(std::memory_order_relaxed); }

  // ReadView holds the shared lock for its lifetime, so a whole batch can be checked and copied
  // without any of its ranges being unregistered meanwhile. While a view is alive, its thread must
  // look ranges up through the view, never through the registry (a re-entrant reader lock can
  // deadlock behind a waiting writer).
  class ReadView {
   public:
    explicit ReadView(const MemoryRegistry& registry) : registry_(registry), lock_(&registry.mu_) {}
    absl::StatusOr<RegisteredBuffer> Find(uint64_t addr, uint64_t length, bool remote) const;

   private:
    const MemoryRegistry& registry_;
    absl::ReaderMutexLock lock_;
  };

 private:
  const RegisteredBuffer* FindLocked(uint64_t addr, uint64_t length) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status RangeError(uint64_t addr, uint64_t length, bool remote) const;

  struct Entry {
    RegisteredBuffer buffer;
    mutable int pins = 0;  // guarded by mu_
  };
  void Unpin(uint64_t addr) const;

  mutable std::atomic<uint64_t> remote_refusals_{0};
  mutable absl::Mutex mu_;
  std::map<uint64_t, Entry> buffers_ ABSL_GUARDED_BY(mu_);  // keyed by start address
  // Pins of buffers already unregistered, by start address: Unregister waits for them.
  mutable std::map<uint64_t, int> draining_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_MEMORY_REGISTRY_H_
