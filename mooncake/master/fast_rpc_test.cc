// The fast RPC path: same answers as gRPC, fallback when its transport fails, and a server that
// survives malformed frames.
#include "mooncake/master/fast_rpc.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

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
  auto started = client_->BatchPutStart(keys, {4096, 8192, 1}, ReplicateConfig(), {});
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
  // Not the protocol at all; and a well-formed 12-byte header announcing a 4 GiB payload.
  for (const std::string& junk : {std::string("GET / HTTP/1.1\r\n\r\n"),
                                  std::string("MCFR\x01\x01\0\0\xff\xff\xff\xff", 12)}) {
    absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server_->fast_rpc_port(), absl::Seconds(1));
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(SendAll(*fd, junk.data(), junk.size()).ok());
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

namespace mooncake {
namespace {

// A proxy in front of the fast RPC port that forwards every request but loses the answer to the
// first put-start (the request ran on the master; its answer never came back).
class LossyProxy {
 public:
  explicit LossyProxy(int upstream) : upstream_(upstream) {
    absl::StatusOr<int> fd = ListenTcp("127.0.0.1", 0, &port_);
    EXPECT_TRUE(fd.ok());
    listen_fd_ = *fd;
    thread_ = std::thread([this] { Loop(); });
  }
  ~LossyProxy() {
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }
  int port() const { return port_; }
  int dropped() const { return dropped_.load(); }

 private:
  void Loop() {
    for (;;) {
      int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) return;
      absl::StatusOr<int> server = ConnectTcp("127.0.0.1", upstream_, absl::Seconds(1));
      if (!server.ok()) return;
      for (;;) {
        std::string frame;
        if (!Forward(client, *server, &frame)) break;
        const uint8_t op = static_cast<uint8_t>(frame[4]);
        std::string reply;
        if (!Forward(*server, -1, &reply)) break;
        if (op == static_cast<uint8_t>(FastRpcOp::kPutStart) && dropped_.fetch_add(1) == 0) {
          break;  // the answer is lost
        }
        if (!SendAll(client, reply.data(), reply.size()).ok()) break;
      }
      close(client);
      close(*server);
    }
  }
  // Reads one frame (12-byte header + payload) from `from` into *frame; sends it to `to` (if >= 0).
  static bool Forward(int from, int to, std::string* frame) {
    frame->assign(12, '\0');
    if (!RecvAll(from, frame->data(), 12).ok()) return false;
    uint32_t length;
    memcpy(&length, frame->data() + 8, 4);
    frame->resize(12 + length);
    if (!RecvAll(from, frame->data() + 12, length).ok()) return false;
    return to < 0 || SendAll(to, frame->data(), frame->size()).ok();
  }

  const int upstream_;
  int port_ = 0;
  int listen_fd_ = -1;
  std::atomic<int> dropped_{0};
  std::thread thread_;
};

// Regression (defect 4): when the fast path lost a put-start's answer, the call was sent again over
// gRPC; the master then saw the first attempt's put as another writer's and answered
// REPLICA_IS_NOT_READY, and the writer waited for its own put and failed while the space stayed
// reserved for put_start_release_timeout. With the client's put ids the repeat finds its own puts.
TEST_F(FastRpcTest, PutStartWhoseAnswerWasLostIsRepeatedSafely) {
  LossyProxy proxy(server_->fast_rpc_port());
  GrpcMasterClientOptions c;
  c.address = absl::StrFormat("127.0.0.1:%d", server_->port());
  c.fast_rpc_port = proxy.port();
  auto client = GrpcMasterClient::Create(c);
  ASSERT_TRUE(client.ok());
  const ClientId me{7, 8};
  ASSERT_TRUE((*client)->Heartbeat(me).ok());  // learns the fast path (through the proxy)
  ASSERT_TRUE((*client)->MountSegment(me, {"seg", 1 << 20, 64 << 20, 1}).ok());
  const uint64_t put_id = (uint64_t{1} << 63) | 42;
  auto started = (*client)->BatchPutStart({"k"}, {4096}, ReplicateConfig(), {put_id});
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(proxy.dropped(), 1) << "the fast path's answer was not lost: nothing was tested";
  ASSERT_EQ((*started)[0].error, ErrorCode::OK) << ErrorCodeName((*started)[0].error);
  EXPECT_EQ((*started)[0].put_id, put_id);
  const MasterMetrics m = server_->service()->GetMetrics();
  EXPECT_EQ(m.processing_objects, 1u);
  EXPECT_EQ(m.allocated_bytes, 4096u) << "the repeat allocated a second time";
  auto ended = (*client)->BatchPutEnd({"k"}, {put_id});
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ((*ended)[0], ErrorCode::OK);
  EXPECT_EQ((*(*client)->BatchExistKey({"k"}))[0], ErrorCode::OK);
}

// Resident memory of this process, in bytes.
uint64_t Rss() {
  FILE* f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f != nullptr) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return static_cast<uint64_t>(resident) * sysconf(_SC_PAGESIZE);
}

// Regression (defect 8): a request header made the server allocate and zero its whole claimed
// payload (up to 64 MiB) at once, on each of up to 1024 connections. Memory now follows the bytes
// that arrived, all requests share one budget, and a request past it is refused, not queued.
TEST(FastRpcBudgetTest, PeersCannotMakeTheServerHoldMoreThanItsBudget) {
  ManualClock clock;
  MasterService service(MasterServiceOptions(), &clock);
  FastRpcServerOptions o;
  o.request_budget_bytes = 4 << 20;
  FastRpcServer server(&service, o);
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  const uint64_t rss0 = Rss();
  // Eight peers each claim 60 MiB and send a little of it.
  std::vector<int> trickling;
  for (int i = 0; i < 8; ++i) {
    absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server.port(), absl::Seconds(1));
    ASSERT_TRUE(fd.ok());
    char header[12] = {'M', 'C', 'F', 'R', 1, kFastRpcVersion, 0, 0};
    const uint32_t claimed = 60u << 20;
    memcpy(header + 8, &claimed, 4);
    std::string some(100 << 10, 'x');
    ASSERT_TRUE(SendAll(*fd, header, 12).ok());
    ASSERT_TRUE(SendAll(*fd, some.data(), some.size()).ok());
    trickling.push_back(*fd);
  }
  usleep(300 * 1000);
  EXPECT_LE(server.request_budget().used(), o.request_budget_bytes);
  EXPECT_LT(Rss() - std::min(Rss(), rss0), 64ull << 20) << "memory followed the claims";
  // A request that does not fit is answered with a clear refusal; small calls still work.
  absl::StatusOr<int> big = ConnectTcp("127.0.0.1", server.port(), absl::Seconds(1));
  ASSERT_TRUE(big.ok());
  std::string request(12, '\0');
  memcpy(request.data(), "MCFR", 4);
  request[4] = static_cast<char>(FastRpcOp::kExist);
  request[5] = static_cast<char>(kFastRpcVersion);
  const uint32_t length = 8 << 20;
  memcpy(request.data() + 8, &length, 4);
  request.append(length, '\0');
  ASSERT_TRUE(SendAll(*big, request.data(), request.size()).ok());
  char reply_header[12];
  ASSERT_TRUE(RecvAll(*big, reply_header, 12).ok());
  uint32_t reply_length;
  memcpy(&reply_length, reply_header + 8, 4);
  std::string reply(reply_length, '\0');
  ASSERT_TRUE(RecvAll(*big, reply.data(), reply.size()).ok());
  int32_t code;
  memcpy(&code, reply.data(), 4);
  EXPECT_EQ(code, static_cast<int32_t>(ErrorCode::RPC_FAIL));
  EXPECT_NE(reply.find("busy"), std::string::npos);
  EXPECT_GE(server.request_budget().refused(), 1u);
  FastRpcClient small("127.0.0.1", server.port(), absl::Seconds(2));
  auto codes = small.Codes(FastRpcOp::kExist, {"nothing"});
  ASSERT_TRUE(codes.ok()) << codes.status();
  EXPECT_EQ((*codes)[0], ErrorCode::OBJECT_NOT_FOUND);
  close(*big);
  for (int fd : trickling) close(fd);
  server.Stop();
}

}  // namespace
}  // namespace mooncake
