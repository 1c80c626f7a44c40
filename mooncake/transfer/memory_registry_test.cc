#include "mooncake/transfer/memory_registry.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace {

RegisteredBuffer Buf(uint64_t addr, uint64_t len, bool remote = true) {
  RegisteredBuffer b;
  b.addr = addr;
  b.length = len;
  b.remote_accessible = remote;
  return b;
}

TEST(MemoryRegistryTest, FindsOnlyWhollyContainedRanges) {
  MemoryRegistry r;
  ASSERT_TRUE(r.Register(Buf(0x1000, 0x1000)).ok());
  ASSERT_TRUE(r.Register(Buf(0x3000, 0x100)).ok());
  EXPECT_TRUE(r.Find(0x1000, 0x1000, true).ok());
  EXPECT_TRUE(r.Find(0x1800, 0x10, true).ok());
  EXPECT_EQ(r.Find(0x1800, 0x10, true)->addr, 0x1000u);
  // Straddling the end, spanning the gap, before, after, and wrapping are all rejected.
  EXPECT_FALSE(r.Find(0x1f00, 0x200, true).ok());
  EXPECT_FALSE(r.Find(0x1000, 0x2100, true).ok());
  EXPECT_FALSE(r.Find(0xfff, 2, true).ok());
  EXPECT_FALSE(r.Find(0x3100, 1, true).ok());
  EXPECT_FALSE(r.Find(0x1000, UINT64_MAX, true).ok());
  EXPECT_EQ(ToErrorCode(r.Find(0x9000, 1, true).status()), ErrorCode::INVALID_PARAMS);
}

TEST(MemoryRegistryTest, RejectsOverlapsAndEmptyRanges) {
  MemoryRegistry r;
  ASSERT_TRUE(r.Register(Buf(0x1000, 0x1000)).ok());
  EXPECT_FALSE(r.Register(Buf(0x1800, 0x1000)).ok());
  EXPECT_FALSE(r.Register(Buf(0x800, 0x900)).ok());
  EXPECT_FALSE(r.Register(Buf(0x1000, 0x10)).ok());
  EXPECT_FALSE(r.Register(Buf(0, 0x10)).ok());
  EXPECT_FALSE(r.Register(Buf(0x5000, 0)).ok());
  EXPECT_FALSE(r.Register(Buf(UINT64_MAX - 5, 100)).ok());
  EXPECT_TRUE(r.Register(Buf(0x2000, 0x10)).ok());  // adjacent is fine
  EXPECT_EQ(r.Snapshot().size(), 2u);
}

TEST(MemoryRegistryTest, LocalOnlyBuffersAreNotRemoteAccessible) {
  MemoryRegistry r;
  ASSERT_TRUE(r.Register(Buf(0x1000, 0x1000, /*remote=*/false)).ok());
  EXPECT_TRUE(r.Find(0x1000, 8, /*remote=*/false).ok());
  EXPECT_FALSE(r.Find(0x1000, 8, /*remote=*/true).ok());
}

TEST(MemoryRegistryTest, UnregisterWaitsForInProgressAccess) {
  MemoryRegistry r;
  ASSERT_TRUE(r.Register(Buf(0x1000, 0x1000)).ok());
  std::atomic<bool> unregistered{false};
  absl::StatusOr<MemoryRegistry::Pin> pin = r.PinRange(0x1000, 16, true);
  ASSERT_TRUE(pin.ok()) << pin.status();
  std::thread remover([&] {
    EXPECT_TRUE(r.Unregister(0x1000).ok());
    unregistered = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(unregistered.load()) << "unregistered while a transfer still used the memory";
  EXPECT_FALSE(r.PinRange(0x1000, 16, true).ok()) << "a new pin of a buffer being unregistered";
  pin->Release();
  remover.join();
  EXPECT_TRUE(unregistered.load());
  EXPECT_FALSE(r.PinRange(0x1000, 16, true).ok());
  EXPECT_FALSE(r.Unregister(0x1000).ok());
}

// Regression (defect 5, the registry part): a transfer that takes long (a peer trickling a 256 MiB
// payload) used to hold the registry's lock, so Register of any other buffer, and with it every
// PutBytes, waited for it. A pin holds only its own buffer.
TEST(MemoryRegistryTest, APinnedBufferDoesNotBlockOthers) {
  MemoryRegistry r;
  ASSERT_TRUE(r.Register(Buf(0x1000, 0x1000)).ok());
  absl::StatusOr<MemoryRegistry::Pin> pin = r.PinRange(0x1000, 16, true);
  ASSERT_TRUE(pin.ok());
  std::atomic<bool> done{false};
  std::thread other([&] {
    EXPECT_TRUE(r.Register(Buf(0x9000, 0x1000)).ok());
    EXPECT_TRUE(r.Unregister(0x9000).ok());
    EXPECT_TRUE(r.Find(0x1000, 8, true).ok());
    done = true;
  });
  for (int i = 0; i < 2000 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(done.load()) << "registering another buffer waited for an unrelated transfer";
  other.join();
}

}  // namespace
}  // namespace mooncake
