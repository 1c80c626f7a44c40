// TransferEngine against peers that do not answer: a black-holed address (connects time out) and
// a silent server (accepts, never replies). Real sockets on loopback; the descriptors come from a
// real HTTP metadata server, as for a peer that crashed without cleaning up.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/metadata/http_metadata_server.h"
#include "mooncake/metadata/metadata_client.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/transfer/segment_descriptor.h"
#include "mooncake/transfer/transfer_engine.h"

namespace mooncake {
namespace {

using Op = TransferRequest::Opcode;

// BlackHole listens with a full accept queue: every further connect times out.
class BlackHole {
 public:
  BlackHole() {
    absl::StatusOr<int> fd = ListenTcp("127.0.0.1", 0, &port_);
    EXPECT_TRUE(fd.ok());
    fd_ = *fd;
    EXPECT_EQ(listen(fd_, 0), 0);
    absl::StatusOr<int> filler = ConnectTcp("127.0.0.1", port_, absl::Seconds(1));
    EXPECT_TRUE(filler.ok());
    filler_ = *filler;
  }
  ~BlackHole() {
    close(filler_);
    close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1, filler_ = -1, port_ = 0;
};

// SilentServer accepts one connection and never answers on it; it closes every later one at once
// (so a fence sent to it fails fast instead of waiting).
class SilentServer {
 public:
  SilentServer() {
    absl::StatusOr<int> fd = ListenTcp("127.0.0.1", 0, &port_);
    EXPECT_TRUE(fd.ok());
    fd_ = *fd;
    thread_ = std::thread([this] {
      for (;;) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        if (held_ < 0) {
          held_ = c;
        } else {
          close(c);
        }
      }
    });
  }
  ~SilentServer() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
    if (held_ >= 0) close(held_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1, port_ = 0;
  std::atomic<int> held_{-1};
  std::thread thread_;
};

class EngineFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metadata::HttpMetadataServerOptions mo;
    mo.host = "127.0.0.1";
    mo.port = 0;
    server_ = std::make_unique<metadata::HttpMetadataServer>(mo);
    ASSERT_TRUE(server_->Start().ok());
    url_ = absl::StrCat("http://127.0.0.1:", server_->port(), "/metadata");
    auto client = metadata::NewMetadataClient(url_);
    ASSERT_TRUE(client.ok());
    meta_ = std::move(*client);
  }
  // Publishes a descriptor for segment `name` whose control and data port is `port`.
  void PublishPeer(const std::string& name, int port) {
    SegmentDescriptor d;
    d.name = name;
    d.tcp_host = "127.0.0.1";
    d.tcp_port = port;
    d.buffers.push_back({"cpu:0", kRemote, 1 << 20, {}, {}, false});
    ASSERT_TRUE(meta_->Put(SegmentDescriptorKey(name), SegmentDescriptorToJson(d)).ok());
  }
  std::unique_ptr<TransferEngine> Engine(absl::Duration connect_timeout,
                                         absl::Duration transfer_timeout) {
    TransferEngineOptions o;
    o.local_server_name = "127.0.0.1";
    o.metadata_server = url_;
    o.allow_shm = false;
    o.tcp_lanes = 1;
    o.connect_timeout = connect_timeout;
    o.transfer_timeout = transfer_timeout;
    o.reconnect_backoff = absl::Seconds(5);
    auto e = TransferEngine::Create(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  std::vector<TransferRequest> Writes(SegmentId seg, int n) {
    std::vector<TransferRequest> r;
    for (int i = 0; i < n; ++i) {
      r.push_back({Op::kWrite, buf_.data() + i * 4096, seg, kRemote + i * 4096, 4096});
    }
    return r;
  }

  static constexpr uint64_t kRemote = 0x10000000;
  std::unique_ptr<metadata::HttpMetadataServer> server_;
  std::string url_;
  std::unique_ptr<metadata::MetadataClient> meta_;
  std::vector<char> buf_ = std::vector<char>(1 << 20, 'b');
};

// Regression (defect 5): each request to an unreachable peer used to pay the whole connect timeout
// (Submit connected under the segment's lock, once per request): 8 requests took 8 timeouts.
TEST_F(EngineFaultTest, RequestsToABlackHoledPeerCostOneConnectTimeout) {
  BlackHole hole;
  PublishPeer("gone:1", hole.port());
  auto engine = Engine(absl::Milliseconds(500), absl::Seconds(30));
  ASSERT_TRUE(engine->RegisterLocalMemory(buf_.data(), buf_.size(), "cpu:0", false).ok());
  auto seg = engine->OpenSegment("gone:1");
  ASSERT_TRUE(seg.ok()) << seg.status();
  const absl::Time t0 = absl::Now();
  std::vector<absl::Status> st = engine->Transfer(Writes(*seg, 8));
  const absl::Duration first = absl::Now() - t0;
  for (const absl::Status& s : st) EXPECT_EQ(ToErrorCode(s), ErrorCode::TRANSFER_FAIL) << s;
  EXPECT_LT(first, absl::Milliseconds(1500)) << "more than one connect timeout";
  // Right after, within reconnect_backoff, requests fail at once.
  const absl::Time t1 = absl::Now();
  st = engine->Transfer(Writes(*seg, 8));
  EXPECT_LT(absl::Now() - t1, absl::Milliseconds(200));
  for (const absl::Status& s : st) EXPECT_EQ(ToErrorCode(s), ErrorCode::TRANSFER_FAIL) << s;
}

// Regression (defect 5): the watchdog locked each segment in turn, so a peer whose connect hung
// held up the timeouts of every other peer.
TEST_F(EngineFaultTest, APeerStuckConnectingDoesNotDelayOthersTimeouts) {
  BlackHole hole;
  SilentServer silent;
  PublishPeer("stuck:1", hole.port());
  PublishPeer("silent:1", silent.port());
  auto engine = Engine(absl::Seconds(3), absl::Milliseconds(300));
  ASSERT_TRUE(engine->RegisterLocalMemory(buf_.data(), buf_.size(), "cpu:0", false).ok());
  auto stuck = engine->OpenSegment("stuck:1");
  auto quiet = engine->OpenSegment("silent:1");
  ASSERT_TRUE(stuck.ok() && quiet.ok());
  std::atomic<bool> stuck_done{false};
  std::thread connecting([&] {
    engine->Transfer(Writes(*stuck, 1));
    stuck_done = true;
  });
  absl::SleepFor(absl::Milliseconds(100));  // its connect is in progress
  const absl::Time t0 = absl::Now();
  std::vector<absl::Status> st = engine->Transfer(Writes(*quiet, 4));
  const absl::Duration took = absl::Now() - t0;
  for (const absl::Status& s : st) {
    EXPECT_EQ(ToErrorCode(s), ErrorCode::TRANSFER_FAIL) << s;
    EXPECT_NE(s.message().find("timed out"), std::string::npos) << s;
    // The silent peer could not be told to drop the writes: they are reported unsettled.
    EXPECT_TRUE(IsUnsettledWrite(s)) << s;
  }
  EXPECT_LT(took, absl::Milliseconds(1500)) << "the silent peer's timeout waited for the stuck one";
  EXPECT_FALSE(stuck_done.load()) << "the stuck connect ended early: nothing was tested";
  connecting.join();
}

}  // namespace
}  // namespace mooncake
