// HostMemAllocator: page-aligned host memory for SGLang's L2 pool, what
// `mooncake.store.MooncakeHostMemAllocator` wraps. SGLang asks it for the whole host KV pool at
// once (100s of GB), so Alloc reserves address space with MAP_NORESERVE and touches no page:
// memory is committed only as the pool is written.
//
//   HostMemAllocator allocator;
//   absl::StatusOr<void*> pool = allocator.Alloc(uint64_t{200} << 30);  // instant, ~0 RSS
//   ...
//   allocator.Free(*pool);
#ifndef SGLANG_BACKEND_HOST_MEM_ALLOCATOR_H_
#define SGLANG_BACKEND_HOST_MEM_ALLOCATOR_H_

#include <cstdint>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace mooncake {
namespace binding {

class HostMemAllocator {
 public:
  HostMemAllocator() = default;
  // The destructor frees every block still allocated.
  ~HostMemAllocator();
  HostMemAllocator(const HostMemAllocator&) = delete;
  HostMemAllocator& operator=(const HostMemAllocator&) = delete;

  // Alloc maps `size` bytes (rounded up to whole pages) of zeroed, page-aligned, private memory.
  // Errors: size 0 (INVALID_PARAMS); the kernel refusing the mapping (NO_AVAILABLE_HANDLE, with
  // errno's text).
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

}  // namespace binding
}  // namespace mooncake

#endif  // SGLANG_BACKEND_HOST_MEM_ALLOCATOR_H_
