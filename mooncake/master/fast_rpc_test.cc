// The fast RPC path: same answers as gRPC, fallback when its transport fails, and a server that
// survives malformed frames.
#include "mooncake/master/fast_rpc.h"

#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/test_util.h"
#include "mooncake/master/grpc_master_client.h"
#include "mooncake/master/master_server.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

class FastRpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MasterServerOptions o;
    o.bind_address = "127.0.0.1";
    o.port = 0;
    o.metrics_port = -1;
    auto server = MasterServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->fast_rpc_port(), 0);
    GrpcMasterClientOptions c;
    c.address = absl::StrFormat("127.0.0.1:%d", server_->port());
    auto client = GrpcMasterClient::Create(c);
    ASSERT_TRUE(client.ok());
    client_ = std::move(*client);
  }
  std::unique_ptr<MasterServer> server_;
  std::unique_ptr<GrpcMasterClient> client_;
};

TEST_F(FastRpcTest, HeartbeatAdvertisesThePortAndHotCallsGiveTheSameAnswers) {
  const ClientId me{1, 2};
  auto hb = client_->Heartbeat(me);
  ASSERT_TRUE(hb.ok());
  EXPECT_EQ(hb->fast_rpc_port, server_->fast_rpc_port());
  ASSERT_TRUE(client_->MountSegment(me, {"seg", 1 << 20, 64 << 20, /*instance=*/0xabcdef}).ok());
  std::vector<std::string> keys = {"a", "b", ""};
  auto started = client_->BatchPutStart(keys, {4096, 8192, 1}, ReplicateConfig());
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ((*started)[0].error, ErrorCode::OK);
  ASSERT_EQ((*started)[1].replicas.size(), 1u);
  EXPECT_EQ((*started)[1].replicas[0].segment_name, "seg");
  EXPECT_EQ((*started)[1].replicas[0].segment_instance, 0xabcdefu);
  EXPECT_EQ((*started)[2].error, ErrorCode::INVALID_KEY);
  // Put ids travel both ways: a wrong one ends nothing, the right ones end the puts.
  const uint64_t id_a = (*started)[0].put_id, id_b = (*started)[1].put_id;
  EXPECT_NE(id_a, 0u);
  EXPECT_NE(id_a, id_b);
  auto wrong = client_->BatchPutEnd({"a"}, {id_a + 1000});
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(*wrong, std::vector<ErrorCode>{ErrorCode::OBJECT_NOT_FOUND});
  auto ended = client_->BatchPutEnd({"a", "b"}, {id_a, id_b});
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(*ended, (std::vector<ErrorCode>{ErrorCode::OK, ErrorCode::OK}));
  auto exist = client_->BatchExistKey({"a", "missing"});
  ASSERT_TRUE(exist.ok());
  EXPECT_EQ(*exist, (std::vector<ErrorCode>{ErrorCode::OK, ErrorCode::OBJECT_NOT_FOUND}));
  auto list = client_->BatchGetReplicaList({"b"});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->objects[0].size, 8192u);
  EXPECT_EQ(list->objects[0].replicas[0].address, (*started)[1].replicas[0].address);
  EXPECT_GT(list->lease_ttl, absl::ZeroDuration());
  EXPECT_EQ(server_->service()->GetMetrics().put_end_keys, 3u);
  // A batch the master rejects as a whole comes back as that error, not as a transport failure.
  std::vector<std::string> too_many(kMaxBatchKeys + 1, "k");
  EXPECT_EQ(ToErrorCode(client_->BatchExistKey(too_many).status()), ErrorCode::INVALID_PARAMS);
}

TEST_F(FastRpcTest, DeadFastPortIsUnavailableAndMalformedFramesCloseOnlyTheirConnection) {
  FastRpcClient dead("127.0.0.1", UnusedLoopbackPort(), absl::Seconds(1));
  EXPECT_EQ(dead.Codes(FastRpcOp::kExist, {"x"}).status().code(), absl::StatusCode::kUnavailable);
  for (const char* junk : {"GET / HTTP/1.1\r\n\r\n", "MCFR\x01\x01\0\0\xff\xff\xff\xff"}) {
    absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server_->fast_rpc_port(), absl::Seconds(1));
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(SendAll(*fd, junk, 16).ok());
    char c;
    EXPECT_EQ(recv(*fd, &c, 1, 0), 0);
    close(*fd);
  }
  FastRpcClient ok("127.0.0.1", server_->fast_rpc_port(), absl::Seconds(1));
  auto codes = ok.Codes(FastRpcOp::kExist, {"nothing"});
  ASSERT_TRUE(codes.ok()) << codes.status();
  EXPECT_EQ((*codes)[0], ErrorCode::OBJECT_NOT_FOUND);
}

}  // namespace
}  // namespace mooncake
