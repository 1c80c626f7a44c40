// HostMemAllocator: page-aligned host memory for SGLang's L2 pool, what
// `mooncake.store.MooncakeHostMemAllocator` wraps. SGLang asks it for the whole host KV pool at
// once (100s of GB), so Alloc maps a memfd with MAP_NORESERVE and touches no page: memory is
// committed only as the pool is written.
//
// Every block is a memfd mapped MAP_SHARED, so a storage process on this host can map the same
// pages (standalone mode, docs/standalone.md): a StandaloneClient finds the block holding a
// caller's buffer with FindHostBlock and hands the storage process its descriptor once, after
// which puts and gets from the pool copy no byte in this process.
//
//   HostMemAllocator allocator;
//   absl::StatusOr<void*> pool = allocator.Alloc(uint64_t{200} << 30);  // instant, ~0 RSS
//   ...
//   allocator.Free(*pool);
#ifndef MOONCAKE_STANDALONE_HOST_MEM_ALLOCATOR_H_
#define MOONCAKE_STANDALONE_HOST_MEM_ALLOCATOR_H_

#include <cstdint>
#include <map>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace mooncake {

class HostMemAllocator {
 public:
  HostMemAllocator() = default;
  // The destructor frees every block still allocated.
  ~HostMemAllocator();
  HostMemAllocator(const HostMemAllocator&) = delete;
  HostMemAllocator& operator=(const HostMemAllocator&) = delete;

  // Alloc maps `size` bytes (rounded up to whole pages) of zeroed, page-aligned, shareable memory.
  // Errors: size 0 (INVALID_PARAMS); the kernel refusing the memfd or the mapping
  // (NO_AVAILABLE_HANDLE, with errno's text).
  absl::StatusOr<void*> Alloc(uint64_t size);

  // Free unmaps a block returned by Alloc. Freeing anything else is INVALID_PARAMS and changes
  // nothing.
  absl::Status Free(void* ptr);

  // Bytes of address space currently allocated (whole pages).
  uint64_t allocated_bytes() const;

  // PageSize is the system page size Alloc aligns to.
  static uint64_t PageSize();

 private:
  mutable absl::Mutex mu_;
  std::map<uintptr_t, uint64_t> blocks_ ABSL_GUARDED_BY(mu_);  // address -> mapped length
};

// A live block of any HostMemAllocator in this process. `id` is never reused, so a block freed
// and another mapped at the same address are told apart.
struct HostBlock {
  uint64_t id = 0;
  char* base = nullptr;
  uint64_t length = 0;
};

// FindHostBlock returns the live block holding all of [ptr, ptr + length), if any.
std::optional<HostBlock> FindHostBlock(const void* ptr, uint64_t length);

// DupHostBlockFd returns a new descriptor of block `id`'s memfd (the caller closes it), or -1 once
// the block was freed.
int DupHostBlockFd(uint64_t id);

// HostBlocksFreed counts frees so far: a holder of block ids re-checks them when it moved.
uint64_t HostBlocksFreed();

}  // namespace mooncake

#endif  // MOONCAKE_STANDALONE_HOST_MEM_ALLOCATOR_H_
