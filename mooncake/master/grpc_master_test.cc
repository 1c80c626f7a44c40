// The MasterClient contract, checked against both implementations (in-process and gRPC to an
// in-process MasterServer), plus what only the wire path has: deadlines, unreachable and hung
// masters, oversized and garbage requests, and the HTTP endpoints.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mooncake/common/clock.h"
#include "mooncake/master/grpc_master_client.h"
#include "mooncake/master/local_master_client.h"
#include "mooncake/master/master_server.h"

namespace mooncake {

void PrintTo(ErrorCode code, std::ostream* os) { *os << ErrorCodeName(code); }

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr ClientId kClient{0x1234, 0x5678};
constexpr uint64_t kBase = 0x7f0000000000;
constexpr uint64_t kMiB = 1 << 20;

MasterServerOptions LoopbackOptions() {
  MasterServerOptions options;
  options.bind_address = "127.0.0.1";
  options.port = 0;
  options.metrics_port = 0;
  return options;
}

std::unique_ptr<GrpcMasterClient> Connect(int port, absl::Duration timeout = absl::Seconds(5)) {
  GrpcMasterClientOptions options;
  options.address = absl::StrCat("127.0.0.1:", port);
  options.rpc_timeout = timeout;
  auto client = GrpcMasterClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return std::move(*client);
}

// A TCP listener that never accepts: connections complete in the kernel, nothing ever answers.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port nobody listens on (bound once, then released).
int UnusedPort() {
  SilentListener listener;
  return listener.port();
}

enum class Transport { kLocal, kGrpc };

class MasterClientContractTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    auto server = MasterServer::Start(LoopbackOptions());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    if (GetParam() == Transport::kLocal) {
      client_ = std::make_unique<LocalMasterClient>(server_->service());
    } else {
      client_ = Connect(server_->port());
    }
  }

  std::unique_ptr<MasterServer> server_;
  std::unique_ptr<MasterClient> client_;
};

TEST_P(MasterClientContractTest, PutReadRemoveRoundTrip) {
  MasterClient& m = *client_;
  ASSERT_TRUE(m.MountSegment(kClient, {"127.0.0.1:17000", kBase, 64 * kMiB, 0x5eed}).ok());
  const std::vector<std::string> keys = {"a", "b", "c"};
  const std::vector<uint64_t> sizes = {kMiB, 2 * kMiB, 3 * kMiB};
  ReplicateConfig config;
  auto started = m.BatchPutStart(keys, sizes, config, {});
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_EQ(started->size(), 3u);
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ((*started)[i].error, ErrorCode::OK);
    EXPECT_EQ((*started)[i].size, sizes[i]);
    ASSERT_EQ((*started)[i].replicas.size(), 1u);
    EXPECT_EQ((*started)[i].replicas[0].segment_name, "127.0.0.1:17000");
    EXPECT_EQ((*started)[i].replicas[0].segment_instance, 0x5eedu);
    EXPECT_GE((*started)[i].replicas[0].address, kBase);
  }
  EXPECT_THAT(*m.BatchExistKey({"a", "b", "c", "d"}),
              ElementsAre(ErrorCode::OBJECT_NOT_FOUND, ErrorCode::OBJECT_NOT_FOUND,
                          ErrorCode::OBJECT_NOT_FOUND, ErrorCode::OBJECT_NOT_FOUND));
  // A revoke naming another put of the key frees nothing.
  EXPECT_THAT(*m.BatchPutRevoke({"c"}, {(*started)[2].put_id + 1}, false),
              ElementsAre(ErrorCode::OBJECT_NOT_FOUND));
  EXPECT_THAT(*m.BatchPutEnd({"a", "b"}, {(*started)[0].put_id, (*started)[1].put_id}),
              ElementsAre(ErrorCode::OK, ErrorCode::OK));
  EXPECT_THAT(*m.BatchPutRevoke({"c", "zz"}, {}, false),
              ElementsAre(ErrorCode::OK, ErrorCode::OBJECT_NOT_FOUND));
  EXPECT_THAT(*m.BatchExistKey({"a", "b", "c"}),
              ElementsAre(ErrorCode::OK, ErrorCode::OK, ErrorCode::OBJECT_NOT_FOUND));

  auto list = m.BatchGetReplicaList({"a", "missing"});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->lease_ttl, absl::Milliseconds(10000));
  EXPECT_EQ(list->objects[0].error, ErrorCode::OK);
  EXPECT_EQ(list->objects[0].size, kMiB);
  EXPECT_EQ(list->objects[0].replicas[0], (*started)[0].replicas[0]);
  EXPECT_EQ(list->objects[1].error, ErrorCode::OBJECT_NOT_FOUND);

  // Leased by the calls above.
  EXPECT_THAT(*m.BatchRemove({"a"}, false), ElementsAre(ErrorCode::OBJECT_HAS_LEASE));
  EXPECT_THAT(*m.BatchRemove({"a"}, true), ElementsAre(ErrorCode::OK));
  EXPECT_EQ(*m.RemoveByRegex("^b$", true), 1u);
  EXPECT_EQ(*m.RemoveAll(true), 0u);
  EXPECT_EQ(ToErrorCode(m.RemoveByRegex("(", false).status()), ErrorCode::INVALID_PARAMS);

  auto hb = m.Heartbeat(kClient);
  ASSERT_TRUE(hb.ok());
  EXPECT_FALSE(hb->need_remount);
  EXPECT_EQ(hb->client_ttl, absl::Seconds(10));
  EXPECT_TRUE(m.Heartbeat(ClientId{9, 9})->need_remount);

  auto segments = m.ListSegments();
  ASSERT_TRUE(segments.ok());
  ASSERT_EQ(segments->size(), 1u);
  EXPECT_EQ((*segments)[0].segment, (SegmentDesc{"127.0.0.1:17000", kBase, 64 * kMiB, 0x5eed}));
  EXPECT_EQ((*segments)[0].owner, kClient);
  EXPECT_EQ((*segments)[0].allocated, 0u);

  EXPECT_TRUE(m.UnmountSegment(kClient, "127.0.0.1:17000", kBase).ok());
  EXPECT_TRUE(m.ListSegments()->empty());
  EXPECT_TRUE(m.RemountSegment(kClient, {{"127.0.0.1:17000", kBase, 64 * kMiB}}).ok());
  EXPECT_EQ(m.ListSegments()->size(), 1u);
}

TEST_P(MasterClientContractTest, ErrorsCarryTheirCodes) {
  MasterClient& m = *client_;
  // Whole-call rejections.
  const std::vector<uint64_t> one = {kMiB};
  auto mismatched = m.BatchPutStart({"a", "b"}, one, ReplicateConfig{}, {});
  EXPECT_EQ(ToErrorCode(mismatched.status()), ErrorCode::INVALID_PARAMS);
  EXPECT_THAT(std::string(mismatched.status().message()), HasSubstr("2 keys but 1 sizes"));
  std::vector<std::string> many(kMaxBatchKeys + 1, "k");
  EXPECT_EQ(ToErrorCode(m.BatchExistKey(many).status()), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(m.MountSegment(ClientId{}, {"x:1", kBase, kMiB})),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(m.UnmountSegment(kClient, "x:1", kBase)), ErrorCode::CLIENT_NOT_FOUND);
  EXPECT_EQ(ToErrorCode(m.Heartbeat(ClientId{}).status()), ErrorCode::INVALID_PARAMS);
  // Per-key codes.
  auto started = m.BatchPutStart({"", "no-space"}, {kMiB, kMiB}, ReplicateConfig{}, {});
  ASSERT_TRUE(started.ok());
  EXPECT_EQ((*started)[0].error, ErrorCode::INVALID_KEY);
  EXPECT_EQ((*started)[1].error, ErrorCode::NO_AVAILABLE_HANDLE);
  ReplicateConfig bad;
  bad.replica_num = -3;
  EXPECT_EQ(ToErrorCode(m.BatchPutStart({"a"}, one, bad, {}).status()), ErrorCode::INVALID_PARAMS);
}

INSTANTIATE_TEST_SUITE_P(Both, MasterClientContractTest,
                         ::testing::Values(Transport::kLocal, Transport::kGrpc),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return info.param == Transport::kLocal ? "Local" : "Grpc";
                         });

TEST(GrpcMasterClientTest, RejectsBadOptions) {
  for (const char* address : {"", "localhost", ":50051", "host:0", "host:70000", "host:x"}) {
    GrpcMasterClientOptions options;
    options.address = address;
    EXPECT_EQ(ToErrorCode(GrpcMasterClient::Create(options).status()), ErrorCode::INVALID_PARAMS)
        << address;
  }
  GrpcMasterClientOptions options;
  options.address = "127.0.0.1:50051";
  options.rpc_timeout = absl::ZeroDuration();
  EXPECT_FALSE(GrpcMasterClient::Create(options).ok());
}

TEST(GrpcMasterClientTest, UnreachableMasterFailsFastWithRpcFail) {
  auto client = Connect(UnusedPort(), absl::Seconds(5));
  const absl::Time start = absl::Now();
  auto hb = client->Heartbeat(kClient);
  EXPECT_EQ(ToErrorCode(hb.status()), ErrorCode::RPC_FAIL) << hb.status();
  EXPECT_THAT(std::string(hb.status().message()), HasSubstr("Heartbeat"));
  EXPECT_EQ(ToErrorCode(client->BatchExistKey({"k"}).status()), ErrorCode::RPC_FAIL);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

TEST(GrpcMasterClientTest, HungMasterTimesOutWithRpcTimeout) {
  SilentListener hung;
  auto client = Connect(hung.port(), absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  auto r = client->BatchGetReplicaList({"k"});
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(ToErrorCode(r.status()), ErrorCode::RPC_TIMEOUT) << r.status();
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST(MasterServerTest, SurvivesOversizedAndGarbageRequests) {
  auto server = MasterServer::Start(LoopbackOptions());
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = Connect((*server)->port());
  // Over the 64 MiB message limit: refused by gRPC, not by crashing.
  std::vector<std::string> huge(70, std::string(1 << 20, 'k'));
  EXPECT_EQ(ToErrorCode(client->BatchExistKey(huge).status()), ErrorCode::RPC_FAIL);
  // Over the per-key limit but within the message limit.
  EXPECT_THAT(*client->BatchExistKey({std::string(kMaxKeyLength + 1, 'k')}),
              ElementsAre(ErrorCode::INVALID_KEY));
  // Raw garbage on the gRPC port.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>((*server)->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  std::string garbage(100000, '\xff');
  EXPECT_GT(write(fd, garbage.data(), garbage.size()), 0);
  close(fd);
  EXPECT_TRUE(client->Heartbeat(kClient).ok());
}

TEST(MasterServerTest, SecondServerOnTheSamePortFailsClearly) {
  auto first = MasterServer::Start(LoopbackOptions());
  ASSERT_TRUE(first.ok());
  MasterServerOptions options = LoopbackOptions();
  options.port = (*first)->port();
  auto second = MasterServer::Start(options);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", (*first)->port())));
  options = LoopbackOptions();
  options.metrics_port = (*first)->metrics_port();
  auto third = MasterServer::Start(options);
  ASSERT_FALSE(third.ok());
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("metrics"));
}

TEST(MasterServerTest, RejectsBadOptions) {
  MasterServerOptions options = LoopbackOptions();
  options.bind_address = "not-an-address";
  EXPECT_FALSE(MasterServer::Start(options).ok());
  options = LoopbackOptions();
  options.rpc_thread_num = 0;
  EXPECT_FALSE(MasterServer::Start(options).ok());
  options = LoopbackOptions();
  options.port = 65536;
  EXPECT_FALSE(MasterServer::Start(options).ok());
  options = LoopbackOptions();
  options.service.eviction_ratio = 1.5;
  EXPECT_FALSE(MasterServer::Start(options).ok());
}

TEST(MasterServerTest, HttpEndpoints) {
  MasterServerOptions options = LoopbackOptions();
  options.enable_http_metadata_server = true;
  options.http_metadata_server_port = 0;
  auto server = MasterServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client http("127.0.0.1", (*server)->metrics_port());
  auto health = http.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto segments = http.Get("/get_all_segments");
  ASSERT_TRUE(segments);
  EXPECT_EQ(segments->body, "");

  auto client = Connect((*server)->port());
  ASSERT_TRUE(client->MountSegment(kClient, {"127.0.0.1:17000", kBase, 64 * kMiB}).ok());
  ASSERT_TRUE(client->BatchPutStart({"k"}, {kMiB}, ReplicateConfig{}, {}).ok());
  segments = http.Get("/get_all_segments");
  ASSERT_TRUE(segments);
  EXPECT_EQ(segments->body, "127.0.0.1:17000\n");
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->body, HasSubstr("mooncake_master_segments 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("mooncake_master_capacity_bytes 67108864\n"));
  EXPECT_THAT(metrics->body, HasSubstr("mooncake_master_allocated_bytes 1048576\n"));
  EXPECT_THAT(metrics->body, HasSubstr("mooncake_master_processing_objects 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("mooncake_master_put_start_keys_total 1\n"));
  EXPECT_EQ(http.Get("/nope")->status, 404);

  // The embedded metadata server answers on its own port.
  ASSERT_GT((*server)->metadata_port(), 0);
  httplib::Client metadata("127.0.0.1", (*server)->metadata_port());
  auto put = metadata.Put("/metadata?key=mooncake/ram/x", "{\"name\":\"x\"}", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200);
  auto get = metadata.Get("/metadata?key=mooncake/ram/x");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->body, "{\"name\":\"x\"}");
}

TEST(MasterServerTest, TicksExpireSilentClients) {
  MasterServerOptions options = LoopbackOptions();
  options.service.client_ttl = absl::Milliseconds(300);
  options.tick_interval = absl::Milliseconds(20);
  auto server = MasterServer::Start(options);
  ASSERT_TRUE(server.ok());
  auto client = Connect((*server)->port());
  ASSERT_TRUE(client->MountSegment(kClient, {"127.0.0.1:17000", kBase, 64 * kMiB}).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!client->ListSegments()->empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(client->ListSegments()->empty());
  EXPECT_TRUE(client->Heartbeat(kClient)->need_remount);
}

}  // namespace
}  // namespace mooncake
