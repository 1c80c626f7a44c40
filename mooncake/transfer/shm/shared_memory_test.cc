#include "mooncake/transfer/shm/shared_memory.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace {

// The registration of a shared buffer, as the engine makes it.
RegisteredBuffer Shared(const SharedBuffer& buf) {
  RegisteredBuffer rb;
  rb.addr = reinterpret_cast<uint64_t>(buf.addr);
  rb.length = buf.length;
  rb.shm_fd = buf.fd;
  return rb;
}

TEST(SharedMemoryTest, PeerMapsTheOwnersMemoryAndSeesWrites) {
  MemoryRegistry registry;
  absl::StatusOr<SharedBuffer> buf = AllocateSharedBuffer(1 << 20, "test");
  ASSERT_TRUE(buf.ok()) << buf.status();
  const RegisteredBuffer rb = Shared(*buf);
  ASSERT_TRUE(registry.Register(rb).ok());
  ShmExporter exporter(&registry);
  ASSERT_TRUE(exporter.Start("mooncake-shm-test-" + std::to_string(getpid())).ok());

  auto peer = ShmPeer::Connect(exporter.name());
  ASSERT_TRUE(peer.ok()) << peer.status();
  absl::StatusOr<char*> p = (*peer)->Translate(rb.addr, rb.length, rb.addr + 100, 5);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NE(*p, reinterpret_cast<char*>(rb.addr + 100));  // a second mapping, not the same pointer
  memcpy(*p, "hello", 5);
  EXPECT_EQ(memcmp(static_cast<char*>(buf->addr) + 100, "hello", 5), 0);
  EXPECT_TRUE((*peer)->Alive());

  // A buffer that is not shared (or not registered) is refused with a clear error.
  EXPECT_EQ(ToErrorCode((*peer)->Translate(0x1000, 10, 0x1000, 1).status()),
            ErrorCode::INVALID_PARAMS);
  // The wrong length means the caller's descriptor is stale.
  EXPECT_FALSE((*peer)->Translate(rb.addr, rb.length * 2, rb.addr, 1).ok());

  // The whole range must be inside the buffer, not just its start (regression: only the start was
  // checked, and with `>`, so a copy could run up to a buffer length past the mapping's end).
  EXPECT_TRUE((*peer)->Translate(rb.addr, rb.length, rb.addr + rb.length - 5, 5).ok());
  EXPECT_EQ(
      ToErrorCode((*peer)->Translate(rb.addr, rb.length, rb.addr + rb.length - 5, 6).status()),
      ErrorCode::INVALID_PARAMS);
  EXPECT_FALSE((*peer)->Translate(rb.addr, rb.length, rb.addr + rb.length, 1).ok());
  EXPECT_FALSE((*peer)->Translate(rb.addr, rb.length, rb.addr + 8, UINT64_MAX - 4).ok());

  exporter.Stop();
  // After the owner stops exporting, the peer notices.
  for (int i = 0; i < 100 && (*peer)->Alive(); ++i) usleep(1000);
  EXPECT_FALSE((*peer)->Alive());
  peer->reset();
  FreeSharedBuffer(*buf);
}

// MC_AUTH_TOKEN on: no memfd (not even the generation page) for a peer without the owner's token.
TEST(SharedMemoryTest, OwnerWithTokenGrantsNothingWithoutIt) {
  MemoryRegistry registry;
  absl::StatusOr<SharedBuffer> buf = AllocateSharedBuffer(1 << 16, "test");
  ASSERT_TRUE(buf.ok()) << buf.status();
  const RegisteredBuffer rb = Shared(*buf);
  ASSERT_TRUE(registry.Register(rb).ok());
  ShmExporter exporter(&registry, "s3cret");
  ASSERT_TRUE(exporter.Start("mooncake-shm-auth-test-" + std::to_string(getpid())).ok());
  for (const char* token : {"", "wrong", "s3cret-and-more"}) {
    auto peer = ShmPeer::Connect(exporter.name(), token);
    ASSERT_FALSE(peer.ok()) << "token '" << token << "'";
    EXPECT_EQ(ToErrorCode(peer.status()), ErrorCode::INVALID_PARAMS);
    EXPECT_NE(peer.status().message().find("MC_AUTH_TOKEN"), absl::string_view::npos)
        << peer.status();
  }
  EXPECT_EQ(exporter.auth_refusals(), 3u);
  auto peer = ShmPeer::Connect(exporter.name(), "s3cret");
  ASSERT_TRUE(peer.ok()) << peer.status();
  absl::StatusOr<char*> p = (*peer)->Translate(rb.addr, rb.length, rb.addr, 5);
  ASSERT_TRUE(p.ok()) << p.status();
  memcpy(*p, "hello", 5);
  EXPECT_EQ(memcmp(buf->addr, "hello", 5), 0);
  EXPECT_GE(exporter.serving(), 1);  // the admitted peer keeps its handshake connection
  peer->reset();
  // Every connection, refused or served, ends once its peer is gone.
  for (int i = 0; i < 500 && exporter.serving() > 0; ++i) usleep(10000);
  EXPECT_EQ(exporter.serving(), 0);
  exporter.Stop();
  FreeSharedBuffer(*buf);
}

TEST(SharedMemoryTest, OwnerWithoutTokenAcceptsPeersThatSendOne) {
  MemoryRegistry registry;
  ShmExporter exporter(&registry);
  ASSERT_TRUE(exporter.Start("mooncake-shm-noauth-test-" + std::to_string(getpid())).ok());
  auto peer = ShmPeer::Connect(exporter.name(), "client-has-one");
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ((*peer)->Generation(), 1u);
  peer->reset();
  exporter.Stop();
}

TEST(SharedMemoryTest, ConnectToMissingOwnerFails) {
  EXPECT_FALSE(ShmPeer::Connect("mooncake-shm-nobody-here").ok());
}

}  // namespace
}  // namespace mooncake
