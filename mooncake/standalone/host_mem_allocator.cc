// Page-aligned, lazily committed, shareable host memory (see host_mem_allocator.h).
#include "mooncake/standalone/host_mem_allocator.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace {

struct LiveBlock {
  uint64_t id;
  uint64_t length;
  int fd;
};

// Every live block of every allocator, by address; the registry owns the memfds.
absl::Mutex registry_mu(absl::kConstInit);
std::map<uintptr_t, LiveBlock>& Registry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu) {
  static auto* blocks = new std::map<uintptr_t, LiveBlock>();
  return *blocks;
}
uint64_t next_block_id ABSL_GUARDED_BY(registry_mu) = 1;
std::atomic<uint64_t> blocks_freed{0};

}  // namespace

HostMemAllocator::~HostMemAllocator() {
  std::map<uintptr_t, uint64_t> blocks;
  {
    absl::MutexLock lock(&mu_);
    blocks = blocks_;
  }
  for (const auto& [addr, length] : blocks) Free(reinterpret_cast<void*>(addr)).IgnoreError();
}

uint64_t HostMemAllocator::PageSize() {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return page;
}

absl::StatusOr<void*> HostMemAllocator::Alloc(uint64_t size) {
  if (size == 0) return MakeError(ErrorCode::INVALID_PARAMS, "alloc(0): size must be positive");
  const uint64_t page = PageSize();
  if (size > (UINT64_MAX >> 1) - page) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("alloc(", size, "): too large"));
  }
  const uint64_t length = (size + page - 1) / page * page;
  auto refuse = [&](const char* what) {
    return MakeError(ErrorCode::NO_AVAILABLE_HANDLE,
                     absl::StrCat("alloc(", FormatByteSize(size), "): ", what,
                                  " failed: ", std::strerror(errno)));
  };
  int fd = memfd_create("mooncake-host-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return refuse("memfd_create");
  // Sealed against shrinking, so a process mapping it can trust its length (no SIGBUS).
  if (ftruncate(fd, static_cast<off_t>(length)) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
    absl::Status s = refuse("ftruncate");
    close(fd);
    return s;
  }
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) {
    absl::Status s = refuse("mmap");
    close(fd);
    return s;
  }
  {
    absl::MutexLock lock(&registry_mu);
    Registry()[reinterpret_cast<uintptr_t>(p)] = LiveBlock{next_block_id++, length, fd};
  }
  absl::MutexLock lock(&mu_);
  blocks_[reinterpret_cast<uintptr_t>(p)] = length;
  return p;
}

absl::Status HostMemAllocator::Free(void* ptr) {
  {
    absl::MutexLock lock(&mu_);
    auto it = blocks_.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == blocks_.end()) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("free(", absl::Hex(reinterpret_cast<uintptr_t>(ptr)),
                                    "): not a block from this allocator"));
    }
    blocks_.erase(it);
  }
  LiveBlock block{};
  {
    absl::MutexLock lock(&registry_mu);
    auto it = Registry().find(reinterpret_cast<uintptr_t>(ptr));
    if (it != Registry().end()) {
      block = it->second;
      Registry().erase(it);
    }
  }
  blocks_freed.fetch_add(1, std::memory_order_acq_rel);
  if (block.length > 0) {
    munmap(ptr, block.length);
    close(block.fd);
  }
  return absl::OkStatus();
}

uint64_t HostMemAllocator::allocated_bytes() const {
  absl::MutexLock lock(&mu_);
  uint64_t total = 0;
  for (const auto& [addr, length] : blocks_) total += length;
  return total;
}

std::optional<HostBlock> FindHostBlock(const void* ptr, uint64_t length) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  absl::MutexLock lock(&registry_mu);
  auto it = Registry().upper_bound(p);
  if (it == Registry().begin()) return std::nullopt;
  --it;
  const uintptr_t base = it->first;
  if (p - base > it->second.length || length > it->second.length - (p - base)) return std::nullopt;
  return HostBlock{it->second.id, reinterpret_cast<char*>(base), it->second.length};
}

int DupHostBlockFd(uint64_t id) {
  absl::MutexLock lock(&registry_mu);
  for (const auto& [addr, block] : Registry()) {
    if (block.id == id) return fcntl(block.fd, F_DUPFD_CLOEXEC, 0);
  }
  return -1;
}

uint64_t HostBlocksFreed() { return blocks_freed.load(std::memory_order_acquire); }

}  // namespace mooncake
