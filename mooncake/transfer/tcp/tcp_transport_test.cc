// TcpPeer against a real TcpDataServer over loopback.
#include "mooncake/transfer/tcp/tcp_transport.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <numeric>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/error_code.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/transfer/memory_registry.h"
#include "mooncake/transfer/tcp/tcp_control.h"
#include "mooncake/transfer/tcp/tcp_data_server.h"

namespace mooncake {
namespace {

class TcpTransportTest : public ::testing::Test {
 protected:
  static constexpr size_t kSize = 4 << 20;
  void SetUp() override {
    // Guard zones on both sides of the registered window catch stray writes.
    remote_.assign(kSize + 2 * kGuard, 0xEE);
    local_.resize(kSize);
    std::iota(local_.begin(), local_.end(), 0);
    RegisteredBuffer b;
    b.addr = reinterpret_cast<uint64_t>(remote_.data() + kGuard);
    b.length = kSize;
    ASSERT_TRUE(registry_.Register(b).ok());
    StartServer("");
  }
  void StartServer(const std::string& auth_token) {
    if (server_ != nullptr) server_->Stop();
    TcpDataServerOptions options;
    options.auth_token = auth_token;
    server_ = std::make_unique<TcpDataServer>(
        &registry_,
        [](FrameOp, const std::string&) -> absl::StatusOr<std::string> {
          return std::string("{}");
        },
        options);
    ASSERT_TRUE(server_->Start("127.0.0.1", 0).ok());
  }
  uint64_t RemoteAddr(size_t off) {
    return reinterpret_cast<uint64_t>(remote_.data() + kGuard + off);
  }
  bool GuardsIntact() {
    for (size_t i = 0; i < kGuard; ++i) {
      if (remote_[i] != 0xEE || remote_[kGuard + kSize + i] != 0xEE) return false;
    }
    return true;
  }
  std::unique_ptr<TcpPeer> MakePeer(int lanes, uint64_t slice, const std::string& token = "") {
    TcpPeerOptions o;
    o.lanes = lanes;
    o.slice_size = slice;
    o.auth_token = token;
    o.reconnect_backoff = absl::ZeroDuration();
    return std::make_unique<TcpPeer>("test-peer", "127.0.0.1", server_->port(), o);
  }
  absl::Status Run(TcpPeer* peer, bool write, char* local, uint64_t remote, uint64_t len) {
    auto batch = std::make_shared<TransferBatch>(1);
    std::vector<TcpSlice> slices;
    peer->Slice(batch, 0, write, local, remote, len, &slices);
    peer->Send(std::move(slices));
    EXPECT_TRUE(batch->Wait(absl::Seconds(10)));
    return batch->status(0);
  }

  static constexpr size_t kGuard = 4096;
  MemoryRegistry registry_;
  std::vector<unsigned char> remote_;
  std::vector<unsigned char> local_;
  std::unique_ptr<TcpDataServer> server_;
};

TEST_F(TcpTransportTest, WriteThenReadBackAcrossSlicesAndLanes) {
  auto peer = MakePeer(/*lanes=*/3, /*slice=*/64 << 10);
  char* src = reinterpret_cast<char*>(local_.data());
  ASSERT_TRUE(Run(peer.get(), true, src, RemoteAddr(0), kSize).ok());
  EXPECT_EQ(memcmp(remote_.data() + kGuard, local_.data(), kSize), 0);
  std::vector<unsigned char> back(kSize, 0);
  ASSERT_TRUE(
      Run(peer.get(), false, reinterpret_cast<char*>(back.data()), RemoteAddr(0), kSize).ok());
  EXPECT_EQ(back, local_);
  EXPECT_TRUE(GuardsIntact());
}

TEST_F(TcpTransportTest, ManyRequestsInOneBatch) {
  auto peer = MakePeer(2, 1 << 20);
  const int n = 256;
  const size_t each = kSize / n;
  auto batch = std::make_shared<TransferBatch>(n);
  std::vector<TcpSlice> slices;
  for (int i = 0; i < n; ++i) {
    peer->Slice(batch, i, true, reinterpret_cast<char*>(local_.data()) + i * each,
                RemoteAddr(i * each), each, &slices);
  }
  peer->Send(std::move(slices));
  ASSERT_TRUE(batch->Wait(absl::Seconds(10)));
  for (const absl::Status& s : batch->statuses()) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(memcmp(remote_.data() + kGuard, local_.data(), kSize), 0);
}

TEST_F(TcpTransportTest, ServerRejectsUnregisteredRangesAndWritesNothing) {
  auto peer = MakePeer(1, 1 << 20);
  char* src = reinterpret_cast<char*>(local_.data());
  const uint64_t refused_before = registry_.remote_refusals();
  // Straddles the end of the registered window into the guard zone.
  absl::Status s = Run(peer.get(), true, src, RemoteAddr(kSize - 100), 200);
  EXPECT_EQ(ToErrorCode(s), ErrorCode::INVALID_PARAMS) << s;
  EXPECT_NE(s.message().find("not inside a registered"), absl::string_view::npos) << s;
  s = Run(peer.get(), false, src, reinterpret_cast<uint64_t>(remote_.data()), 16);
  EXPECT_EQ(ToErrorCode(s), ErrorCode::INVALID_PARAMS) << s;
  EXPECT_TRUE(GuardsIntact());
  for (size_t i = kSize - 100; i < kSize; ++i) ASSERT_EQ(remote_[kGuard + i], 0xEE);
  // Both refusals were counted on the target, and nothing else was.
  EXPECT_EQ(registry_.remote_refusals() - refused_before, 2u);
  // The connection stays usable after a rejected request.
  EXPECT_TRUE(Run(peer.get(), true, src, RemoteAddr(0), 4096).ok());
  EXPECT_EQ(registry_.remote_refusals() - refused_before, 2u);
}

// MC_AUTH_TOKEN on: only a peer presenting the server's token reads or writes a byte.
TEST_F(TcpTransportTest, ServerWithTokenServesOnlyPeersThatPresentIt) {
  StartServer("s3cret");
  std::vector<unsigned char> before(remote_);
  char* src = reinterpret_cast<char*>(local_.data());
  std::vector<unsigned char> back(4096, 0);
  char* dst = reinterpret_cast<char*>(back.data());
  for (const std::string& token : {std::string(), std::string("wrong"), std::string("s3cre")}) {
    auto peer = MakePeer(1, 64 << 10, token);
    absl::Status w = Run(peer.get(), true, src, RemoteAddr(0), 64 << 10);
    ASSERT_FALSE(w.ok()) << "token '" << token << "'";
    EXPECT_NE(w.message().find("MC_AUTH_TOKEN"), absl::string_view::npos) << w;
    absl::Status r = Run(peer.get(), false, dst, RemoteAddr(0), back.size());
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(back, std::vector<unsigned char>(back.size(), 0)) << "a refused read returned data";
    // The descriptor (the P2P handshake) is refused as well.
    absl::StatusOr<std::string> desc = ControlCall(
        "127.0.0.1", server_->port(), FrameOp::kGetDescriptor, "", absl::Seconds(5), token);
    ASSERT_FALSE(desc.ok());
    EXPECT_NE(desc.status().message().find("MC_AUTH_TOKEN"), absl::string_view::npos);
  }
  EXPECT_EQ(remote_, before) << "a refused peer changed registered memory";
  EXPECT_GE(server_->auth_refusals(), 6u);

  auto good = MakePeer(2, 64 << 10, "s3cret");
  ASSERT_TRUE(Run(good.get(), true, src, RemoteAddr(0), kSize).ok());
  EXPECT_EQ(memcmp(remote_.data() + kGuard, local_.data(), kSize), 0);
  ASSERT_TRUE(Run(good.get(), false, dst, RemoteAddr(0), back.size()).ok());
  EXPECT_EQ(memcmp(back.data(), local_.data(), back.size()), 0);
  EXPECT_TRUE(ControlCall("127.0.0.1", server_->port(), FrameOp::kGetDescriptor, "",
                          absl::Seconds(5), "s3cret")
                  .ok());
  EXPECT_TRUE(GuardsIntact());
}

// Before the token, a peer has no payload of a request read, and one frame's time to send it.
TEST_F(TcpTransportTest, ServerWithTokenReadsNothingBeforeItAndDropsSlowPeers) {
  StartServer("s3cret");
  std::vector<unsigned char> before(remote_);
  auto fd = ConnectTcp("127.0.0.1", server_->port(), absl::Seconds(2));
  ASSERT_TRUE(fd.ok()) << fd.status();
  FrameHeader w;
  w.op = FrameOp::kWrite;
  w.addr = RemoteAddr(0);
  w.length = 64 << 20;  // announced, never sent: the refusal must not wait for it
  ASSERT_TRUE(SendAll(*fd, &w, sizeof(w)).ok());
  FrameHeader reply;
  ASSERT_TRUE(RecvAllBy(*fd, &reply, sizeof(reply), absl::Now() + absl::Seconds(3)).ok());
  EXPECT_EQ(reply.op, static_cast<FrameOp>(static_cast<uint8_t>(FrameOp::kWrite) | 0x80));
  EXPECT_NE(reply.status, 0);
  close(*fd);

  // Half a header, then silence: the server closes the connection after kAuthFrameTimeout.
  fd = ConnectTcp("127.0.0.1", server_->port(), absl::Seconds(2));
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(SendAll(*fd, &w, sizeof(w) / 2).ok());
  const absl::Time start = absl::Now();
  char byte;
  absl::Status end = RecvAllBy(*fd, &byte, 1, start + kAuthFrameTimeout + absl::Seconds(5));
  EXPECT_TRUE(absl::IsUnavailable(end)) << end;  // closed by the server, not our deadline
  EXPECT_GE(absl::Now() - start, kAuthFrameTimeout - absl::Milliseconds(100));
  close(*fd);
  EXPECT_EQ(remote_, before);
}

TEST_F(TcpTransportTest, ServerWithoutTokenIgnoresOne) {
  auto peer = MakePeer(1, 64 << 10, "client-has-one");
  char* src = reinterpret_cast<char*>(local_.data());
  ASSERT_TRUE(Run(peer.get(), true, src, RemoteAddr(0), 64 << 10).ok());
  EXPECT_EQ(memcmp(remote_.data() + kGuard, local_.data(), 64 << 10), 0);
  EXPECT_EQ(server_->auth_refusals(), 0u);
}

TEST_F(TcpTransportTest, MalformedFramesCloseOnlyThatConnection) {
  auto peer = MakePeer(1, 1 << 20);
  char* src = reinterpret_cast<char*>(local_.data());
  ASSERT_TRUE(Run(peer.get(), true, src, RemoteAddr(0), 4096).ok());
  for (int variant = 0; variant < 4; ++variant) {
    absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server_->port(), absl::Seconds(1));
    ASSERT_TRUE(fd.ok());
    timeval tv{5, 0};  // a server that keeps the connection fails the test instead of hanging it
    setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    FrameHeader h;
    h.op = FrameOp::kWrite;
    h.addr = RemoteAddr(0);
    h.length = 1 << 20;
    if (variant == 0) h.magic = 0x12345678;
    if (variant == 1) h.length = FrameHeader::kMaxPayload + 1;
    if (variant == 2) h.op = static_cast<FrameOp>(0x55);
    if (variant == 3) h.op = FrameOp::kHello;  // a HELLO whose length is not its 8-byte token
    ASSERT_TRUE(SendAll(*fd, &h, sizeof(h)).ok());
    if (variant == 3) {
      const uint64_t token = 42;
      ASSERT_TRUE(SendAll(*fd, &token, sizeof(token)).ok());
    }
    char c;
    EXPECT_EQ(recv(*fd, &c, 1, 0), 0) << "server should close a connection with a bad header";
    close(*fd);
  }
  // Garbage bytes, then a half header and a hang-up.
  absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server_->port(), absl::Seconds(1));
  ASSERT_TRUE(fd.ok());
  const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n and more junk to fill a header";
  ASSERT_TRUE(SendAll(*fd, junk, sizeof(junk)).ok());
  close(*fd);
  EXPECT_TRUE(GuardsIntact());
  EXPECT_TRUE(Run(peer.get(), false, src, RemoteAddr(0), 4096).ok());
}

TEST_F(TcpTransportTest, ServerGoneFailsRequestsThenReconnects) {
  auto peer = MakePeer(2, 64 << 10);
  char* src = reinterpret_cast<char*>(local_.data());
  ASSERT_TRUE(Run(peer.get(), true, src, RemoteAddr(0), 4096).ok());
  int port = server_->port();
  server_->Stop();
  absl::Status s = Run(peer.get(), true, src, RemoteAddr(0), kSize);
  EXPECT_EQ(ToErrorCode(s), ErrorCode::TRANSFER_FAIL) << s;
  EXPECT_TRUE(peer->TakeFailureFlag());
  // The peer comes back on the same port: the next request reconnects and succeeds.
  server_ = std::make_unique<TcpDataServer>(
      &registry_,
      [](FrameOp, const std::string&) -> absl::StatusOr<std::string> { return std::string("{}"); });
  ASSERT_TRUE(server_->Start("127.0.0.1", port).ok());
  EXPECT_TRUE(Run(peer.get(), true, src, RemoteAddr(0), kSize).ok());
}

// Regression (defect 2): slices cut before another thread's reconnect failed used to be flushed
// to a lane that reconnect had just destroyed (a null dereference), or never flushed at all, so
// the transfer waited forever. They now fail cleanly, and the peer works again once it is back.
TEST_F(TcpTransportTest, SlicesQueuedBeforeAFailedReconnectFailCleanly) {
  auto peer = MakePeer(2, 64 << 10);
  char* src = reinterpret_cast<char*>(local_.data());
  ASSERT_TRUE(Run(peer.get(), true, src, RemoteAddr(0), 256 << 10).ok());
  auto first = std::make_shared<TransferBatch>(1);
  std::vector<TcpSlice> queued;
  peer->Slice(first, 0, true, src, RemoteAddr(0), 256 << 10, &queued);
  const int port = server_->port();
  server_->Stop();
  usleep(200 * 1000);  // both lanes see the hang-up
  std::thread other([&] {
    absl::Status s = Run(peer.get(), true, src, RemoteAddr(0), 4096);  // its reconnect fails
    EXPECT_EQ(ToErrorCode(s), ErrorCode::TRANSFER_FAIL) << s;
  });
  other.join();
  peer->Send(std::move(queued));
  ASSERT_TRUE(first->Wait(absl::Seconds(5))) << "slices queued before the failure never finished";
  EXPECT_EQ(ToErrorCode(first->status(0)), ErrorCode::TRANSFER_FAIL) << first->status(0);
  server_ = std::make_unique<TcpDataServer>(
      &registry_,
      [](FrameOp, const std::string&) -> absl::StatusOr<std::string> { return std::string("{}"); });
  ASSERT_TRUE(server_->Start("127.0.0.1", port).ok());
  EXPECT_TRUE(Run(peer.get(), true, src, RemoteAddr(0), kSize).ok());
}

uint64_t Rss() {
  FILE* f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f != nullptr) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return static_cast<uint64_t>(resident) * sysconf(_SC_PAGESIZE);
}

// Regression (defect 8): a control frame's header made the server allocate and zero its claimed
// payload (up to 16 MiB) at once, on each of up to 4096 connections. Control payloads now cost
// only the bytes that arrived, within one budget for the whole server; past it a request gets an
// error answer and the connection stays in step.
TEST(TcpControlBudgetTest, PeersCannotMakeTheServerHoldMoreThanItsBudget) {
  MemoryRegistry registry;
  TcpDataServerOptions o;
  o.control_budget_bytes = 2 << 20;
  TcpDataServer server(
      &registry,
      [](FrameOp, const std::string& p) -> absl::StatusOr<std::string> {
        return std::to_string(p.size());
      },
      o);
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  const uint64_t rss0 = Rss();
  std::vector<int> trickling;
  for (int i = 0; i < 16; ++i) {
    absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server.port(), absl::Seconds(1));
    ASSERT_TRUE(fd.ok());
    FrameHeader h;
    h.op = FrameOp::kRdmaHandshake;
    h.length = FrameHeader::kMaxControlPayload;  // claims 16 MiB
    std::string some(100 << 10, 'x');
    ASSERT_TRUE(SendAll(*fd, &h, sizeof(h)).ok());
    ASSERT_TRUE(SendAll(*fd, some.data(), some.size()).ok());
    trickling.push_back(*fd);
  }
  usleep(300 * 1000);
  EXPECT_LE(server.control_budget().used(), o.control_budget_bytes);
  EXPECT_LT(Rss() - std::min(Rss(), rss0), 64ull << 20) << "memory followed the claims";
  // A request that does not fit is answered with an error; the connection keeps working.
  absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server.port(), absl::Seconds(1));
  ASSERT_TRUE(fd.ok());
  auto call = [&](size_t bytes) -> std::pair<int32_t, std::string> {
    FrameHeader h;
    h.op = FrameOp::kRdmaHandshake;
    h.length = bytes;
    std::string payload(bytes, 'p');
    EXPECT_TRUE(SendAll(*fd, &h, sizeof(h)).ok());
    EXPECT_TRUE(SendAll(*fd, payload.data(), payload.size()).ok());
    FrameHeader r;
    EXPECT_TRUE(RecvAll(*fd, &r, sizeof(r)).ok());
    std::string body(r.length, '\0');
    EXPECT_TRUE(RecvAll(*fd, body.data(), body.size()).ok());
    return {r.status, body};
  };
  auto refused = call(8 << 20);
  EXPECT_EQ(refused.first, static_cast<int32_t>(ErrorCode::RPC_FAIL)) << refused.second;
  EXPECT_GE(server.control_budget().refused(), 1u);
  auto ok = call(1000);
  EXPECT_EQ(ok.first, 0);
  EXPECT_EQ(ok.second, "1000");
  close(*fd);
  for (int t : trickling) close(t);
  server.Stop();
}

TEST(TcpTransportTimeoutTest, SilentPeerTimesOut) {
  int port = 0;
  absl::StatusOr<int> listener = ListenTcp("127.0.0.1", 0, &port);
  ASSERT_TRUE(listener.ok());
  // Accepts (via the backlog) but never answers.
  TcpPeerOptions o;
  o.lanes = 1;
  TcpPeer peer("silent", "127.0.0.1", port, o);
  std::vector<char> buf(4096);
  auto batch = std::make_shared<TransferBatch>(1);
  std::vector<TcpSlice> slices;
  peer.Slice(batch, 0, /*is_write=*/false, buf.data(), 0x1000, buf.size(), &slices);
  peer.Send(std::move(slices));
  EXPECT_FALSE(batch->Wait(absl::Milliseconds(100)));
  peer.CheckTimeouts(absl::Milliseconds(50));
  ASSERT_TRUE(batch->Wait(absl::Seconds(5)));
  EXPECT_EQ(ToErrorCode(batch->status(0)), ErrorCode::TRANSFER_FAIL);
  EXPECT_NE(batch->status(0).message().find("timed out"), absl::string_view::npos)
      << batch->status(0);
  close(*listener);
}

}  // namespace
}  // namespace mooncake
