// Tests for HostMemAllocator: huge reservations cost no memory, alignment, free rules, and the
// block registry standalone mode shares blocks through.
#include "mooncake/standalone/host_mem_allocator.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace {

// Resident set size of this process in bytes, from /proc/self/statm.
uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t total_pages = 0, resident_pages = 0;
  statm >> total_pages >> resident_pages;
  return resident_pages * HostMemAllocator::PageSize();
}

TEST(HostMemAllocatorTest, ReservesHundredsOfGigabytesWithoutTouchingPages) {
  HostMemAllocator allocator;
  const uint64_t rss_before = ResidentBytes();
  absl::StatusOr<void*> pool = allocator.Alloc(uint64_t{300} << 30);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(*pool) % HostMemAllocator::PageSize(), 0u);
  EXPECT_EQ(allocator.allocated_bytes(), uint64_t{300} << 30);
  // Writing a few pages commits only those pages.
  auto* bytes = static_cast<unsigned char*>(*pool);
  std::memset(bytes, 0xab, 1 << 20);
  bytes[(uint64_t{300} << 30) - 1] = 7;
  EXPECT_LT(ResidentBytes() - rss_before, uint64_t{64} << 20);
  EXPECT_EQ(bytes[12345], 0xab);
  EXPECT_EQ(bytes[(uint64_t{300} << 30) - 1], 7);
  EXPECT_TRUE(allocator.Free(*pool).ok());
  EXPECT_EQ(allocator.allocated_bytes(), 0u);
}

TEST(HostMemAllocatorTest, RoundsUpToWholePagesAndZeroes) {
  HostMemAllocator allocator;
  absl::StatusOr<void*> p = allocator.Alloc(10);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(allocator.allocated_bytes(), HostMemAllocator::PageSize());
  const auto* bytes = static_cast<const unsigned char*>(*p);
  for (uint64_t i = 0; i < HostMemAllocator::PageSize(); ++i) ASSERT_EQ(bytes[i], 0) << i;
}

TEST(HostMemAllocatorTest, RejectsZeroAndForeignPointers) {
  HostMemAllocator allocator;
  EXPECT_EQ(ToErrorCode(allocator.Alloc(0).status()), ErrorCode::INVALID_PARAMS);
  int on_stack = 0;
  EXPECT_EQ(ToErrorCode(allocator.Free(&on_stack)), ErrorCode::INVALID_PARAMS);
  absl::StatusOr<void*> p = allocator.Alloc(4096);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(allocator.Free(*p).ok());
  EXPECT_EQ(ToErrorCode(allocator.Free(*p)), ErrorCode::INVALID_PARAMS);  // double free
}

TEST(HostMemAllocatorTest, FailsCleanlyWhenTheKernelRefuses) {
  // Lower the address-space limit so a large mapping must fail; restore it afterwards.
  rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_AS, &old_limit), 0);
  rlimit limit = old_limit;
  limit.rlim_cur = uint64_t{64} << 30;
  ASSERT_EQ(setrlimit(RLIMIT_AS, &limit), 0);
  HostMemAllocator allocator;
  absl::StatusOr<void*> p = allocator.Alloc(uint64_t{128} << 30);
  ASSERT_EQ(setrlimit(RLIMIT_AS, &old_limit), 0);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(ToErrorCode(p.status()), ErrorCode::NO_AVAILABLE_HANDLE);
  EXPECT_NE(std::string(p.status().message()).find("mmap failed"), std::string::npos);
}

TEST(HostMemAllocatorTest, BlocksAreFoundByAnyAddressInsideAndShareTheirPages) {
  HostMemAllocator allocator;
  absl::StatusOr<void*> p = allocator.Alloc(1 << 20);
  ASSERT_TRUE(p.ok());
  char* base = static_cast<char*>(*p);
  std::optional<HostBlock> block = FindHostBlock(base + 4096, 8192);
  ASSERT_TRUE(block.has_value());
  EXPECT_EQ(block->base, base);
  EXPECT_EQ(block->length, uint64_t{1} << 20);
  EXPECT_FALSE(FindHostBlock(base + (1 << 20) - 10, 11).has_value()) << "runs past the end";
  int local = 0;
  EXPECT_FALSE(FindHostBlock(&local, sizeof(local)).has_value());
  // The descriptor maps the same pages: what another process would see.
  int fd = DupHostBlockFd(block->id);
  ASSERT_GE(fd, 0);
  void* other = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(other, MAP_FAILED);
  close(fd);
  base[100] = 42;
  EXPECT_EQ(static_cast<char*>(other)[100], 42);
  static_cast<char*>(other)[200] = 7;
  EXPECT_EQ(base[200], 7);
  munmap(other, 1 << 20);
  const uint64_t freed = HostBlocksFreed();
  ASSERT_TRUE(allocator.Free(base).ok());
  EXPECT_EQ(HostBlocksFreed(), freed + 1);
  EXPECT_FALSE(FindHostBlock(base, 1).has_value());
  EXPECT_EQ(DupHostBlockFd(block->id), -1);
}

}  // namespace
}  // namespace mooncake
