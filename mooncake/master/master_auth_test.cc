// MC_AUTH_TOKEN on a real master: its gRPC port, its fast RPC port and its embedded metadata
// server's writes serve only callers that present the token (common/auth_token.h).
#include <httplib.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/error_code.h"
#include "mooncake/master/fast_rpc.h"
#include "mooncake/master/grpc_master_client.h"
#include "mooncake/master/master_server.h"
#include "mooncake/metadata/http_metadata_client.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

constexpr char kToken[] = "s3cret-token";

class MasterAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MasterServerOptions o;
    o.bind_address = "127.0.0.1";
    o.port = 0;
    o.metrics_port = 0;
    o.enable_http_metadata_server = true;
    o.http_metadata_server_port = 0;
    o.auth_token = kToken;
    auto server = MasterServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  std::unique_ptr<GrpcMasterClient> Client(const std::string& token) {
    GrpcMasterClientOptions c;
    c.address = absl::StrFormat("127.0.0.1:%d", server_->port());
    c.auth_token = token;
    auto client = GrpcMasterClient::Create(c);
    EXPECT_TRUE(client.ok());
    return std::move(*client);
  }
  std::unique_ptr<metadata::HttpMetadataClient> Metadata(const std::string& token) {
    metadata::HttpMetadataClientOptions o;
    o.auth_token = token;
    auto client = metadata::HttpMetadataClient::Create(
        absl::StrFormat("http://127.0.0.1:%d/metadata", server_->metadata_port()), o);
    EXPECT_TRUE(client.ok());
    return std::move(*client);
  }
  static void ExpectRefused(const absl::Status& s) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(ToErrorCode(s), ErrorCode::INVALID_PARAMS) << s;
    EXPECT_NE(s.message().find("MC_AUTH_TOKEN"), absl::string_view::npos) << s;
  }
  // The master's mooncake_master_auth_refusals_total, or -1.
  int64_t Refusals() {
    httplib::Client http("127.0.0.1", server_->metrics_port());
    httplib::Result r = http.Get("/metrics");
    if (!r || r->status != 200) return -1;
    for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      int64_t v = 0;
      if (parts.size() == 2 && parts[0] == "mooncake_master_auth_refusals_total" &&
          absl::SimpleAtoi(parts[1], &v)) {
        return v;
      }
    }
    return -1;
  }
  std::unique_ptr<MasterServer> server_;
};

TEST_F(MasterAuthTest, RefusalsAreCountedInMetrics) {
  ASSERT_EQ(Refusals(), 0);
  ExpectRefused(Client("")->Heartbeat({1, 2}).status());
  ExpectRefused(Metadata("")->Put("k", "v"));
  FastRpcClient fast("127.0.0.1", server_->fast_rpc_port(), absl::Seconds(3), "wrong");
  EXPECT_FALSE(fast.Codes(FastRpcOp::kExist, {"k"}).ok());
  EXPECT_EQ(Refusals(), 3);
  ASSERT_TRUE(Client(kToken)->Heartbeat({1, 2}).ok());
  EXPECT_EQ(Refusals(), 3);
}

TEST_F(MasterAuthTest, GrpcCallsWithoutTheTokenChangeNothing) {
  const ClientId me{1, 2};
  for (const std::string& bad : {std::string(), std::string("wrong")}) {
    auto client = Client(bad);
    ExpectRefused(client->Heartbeat(me).status());
    ExpectRefused(client->MountSegment(me, {"seg", 1 << 20, 64 << 20, 1}));
    ExpectRefused(client->BatchPutStart({"k"}, {4096}, ReplicateConfig(), {}).status());
    ExpectRefused(client->RemoveAll(true).status());
  }
  auto good = Client(kToken);
  auto hb = good->Heartbeat(me);
  ASSERT_TRUE(hb.ok()) << hb.status();
  // The refused mount did not happen: the segment list is empty until the real one.
  auto segments = good->ListSegments();
  ASSERT_TRUE(segments.ok());
  EXPECT_TRUE(segments->empty());
  ASSERT_TRUE(good->MountSegment(me, {"seg", 1 << 20, 64 << 20, 1}).ok());
  auto started = good->BatchPutStart({"k"}, {4096}, ReplicateConfig(), {});
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ((*started)[0].error, ErrorCode::OK);
}

TEST_F(MasterAuthTest, FastRpcServesOnlyConnectionsThatPresentTheToken) {
  ASSERT_GT(server_->fast_rpc_port(), 0);
  for (const std::string& bad : {std::string(), std::string("wrong"), std::string(300, 'x')}) {
    FastRpcClient client("127.0.0.1", server_->fast_rpc_port(), absl::Seconds(3), bad);
    absl::StatusOr<std::vector<ErrorCode>> codes = client.Codes(FastRpcOp::kExist, {"k"});
    ASSERT_FALSE(codes.ok()) << "token of " << bad.size() << " bytes";
    // Not a transport failure: the caller must not fall back and retry as if the path broke.
    if (bad.size() <= kMaxAuthTokenBytes) ExpectRefused(codes.status());
  }
  FastRpcClient good("127.0.0.1", server_->fast_rpc_port(), absl::Seconds(3), kToken);
  for (int i = 0; i < 3; ++i) {  // the pooled connection stays authenticated
    absl::StatusOr<std::vector<ErrorCode>> codes = good.Codes(FastRpcOp::kExist, {"k"});
    ASSERT_TRUE(codes.ok()) << codes.status();
    EXPECT_EQ((*codes)[0], ErrorCode::OBJECT_NOT_FOUND);
  }
}

// Before the token, the fast RPC port reads no request payload (a 64 MiB PutStart is refused from
// its header) and gives a silent connection kAuthFrameTimeout.
TEST_F(MasterAuthTest, FastRpcReadsNothingBeforeTheTokenAndDropsSlowPeers) {
  const int64_t refused_before = Refusals();
  // The 12-byte frame header: magic "MCFR", op, version, zero, length (little-endian).
  uint8_t header[12] = {
      0x4d, 0x43, 0x46, 0x52, static_cast<uint8_t>(FastRpcOp::kPutStart), kFastRpcVersion, 0, 0,
      0,    0,    0,    0x04};  // 64 MiB announced, none sent
  auto fd = ConnectTcp("127.0.0.1", server_->fast_rpc_port(), absl::Seconds(2));
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(SendAll(*fd, header, sizeof(header)).ok());
  uint8_t reply[12];
  ASSERT_TRUE(RecvAllBy(*fd, reply, sizeof(reply), absl::Now() + absl::Seconds(3)).ok());
  EXPECT_EQ(reply[4], header[4] | 0x80);
  close(*fd);
  EXPECT_EQ(Refusals(), refused_before + 1);

  fd = ConnectTcp("127.0.0.1", server_->fast_rpc_port(), absl::Seconds(2));
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(SendAll(*fd, header, 5).ok());  // part of a header, then silence
  const absl::Time start = absl::Now();
  char byte;
  absl::Status end = RecvAllBy(*fd, &byte, 1, start + kAuthFrameTimeout + absl::Seconds(5));
  EXPECT_TRUE(absl::IsUnavailable(end)) << end;  // closed by the master, not by our deadline
  EXPECT_GE(absl::Now() - start, kAuthFrameTimeout - absl::Milliseconds(100));
  close(*fd);
}

TEST_F(MasterAuthTest, MetadataWritesNeedTheTokenReadsDoNot) {
  auto anonymous = Metadata("");
  ExpectRefused(anonymous->Put("mooncake/ram/x", "{}"));
  EXPECT_TRUE(absl::IsNotFound(anonymous->Get("mooncake/ram/x").status()));
  auto wrong = Metadata("wrong");
  ExpectRefused(wrong->Put("mooncake/ram/x", "{}"));
  auto good = Metadata(kToken);
  ASSERT_TRUE(good->Put("mooncake/ram/x", "{\"a\":1}").ok());
  ExpectRefused(anonymous->Remove("mooncake/ram/x"));
  EXPECT_EQ(anonymous->Get("mooncake/ram/x").value(), "{\"a\":1}");
  EXPECT_TRUE(good->Remove("mooncake/ram/x").ok());
}

}  // namespace
}  // namespace mooncake
