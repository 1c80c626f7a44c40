// Page-aligned, lazily committed host memory (see host_mem_allocator.h).
#include "sglang_backend/host_mem_allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace binding {

HostMemAllocator::~HostMemAllocator() {
  absl::MutexLock lock(&mu_);
  for (const auto& [addr, length] : blocks_) munmap(reinterpret_cast<void*>(addr), length);
  blocks_.clear();
}

uint64_t HostMemAllocator::PageSize() {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return page;
}

absl::StatusOr<void*> HostMemAllocator::Alloc(uint64_t size) {
  if (size == 0) return MakeError(ErrorCode::INVALID_PARAMS, "alloc(0): size must be positive");
  const uint64_t page = PageSize();
  if (size > UINT64_MAX - page) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("alloc(", size, "): too large"));
  }
  const uint64_t length = (size + page - 1) / page * page;
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return MakeError(
        ErrorCode::NO_AVAILABLE_HANDLE,
        absl::StrCat("alloc(", FormatByteSize(size), "): mmap failed: ", std::strerror(errno)));
  }
  absl::MutexLock lock(&mu_);
  blocks_[reinterpret_cast<uintptr_t>(p)] = length;
  return p;
}

absl::Status HostMemAllocator::Free(void* ptr) {
  uint64_t length = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = blocks_.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == blocks_.end()) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("free(", absl::Hex(reinterpret_cast<uintptr_t>(ptr)),
                                    "): not a block from this allocator"));
    }
    length = it->second;
    blocks_.erase(it);
  }
  munmap(ptr, length);
  return absl::OkStatus();
}

uint64_t HostMemAllocator::allocated_bytes() const {
  absl::MutexLock lock(&mu_);
  uint64_t total = 0;
  for (const auto& [addr, length] : blocks_) total += length;
  return total;
}

}  // namespace binding
}  // namespace mooncake
