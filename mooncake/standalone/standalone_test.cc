// Standalone mode in one process over a real unix socket: a StoreClient holding the segment behind
// a StandaloneServer, and StandaloneClients doing every call through it.
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/master/local_master_client.h"
#include "mooncake/master/master_service.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/standalone/host_mem_allocator.h"
#include "mooncake/standalone/standalone_client.h"
#include "mooncake/standalone/standalone_protocol.h"
#include "mooncake/standalone/standalone_server.h"
#include "mooncake/store/store_client.h"

namespace mooncake {
namespace {

constexpr int64_t kNotFound = static_cast<int64_t>(ErrorCode::OBJECT_NOT_FOUND);
constexpr int64_t kInvalidParams = static_cast<int64_t>(ErrorCode::INVALID_PARAMS);
constexpr int64_t kRpcFail = static_cast<int64_t>(ErrorCode::RPC_FAIL);

class StandaloneTest : public ::testing::Test {
 protected:
  StandaloneTest() : master_(MasterServiceOptions(), RealClock::Get()) {
    port_ = 20000 + getpid() % 30000;
    address_ = absl::StrCat("127.0.0.1:", port_);
  }
  ~StandaloneTest() override {
    server_.reset();
    if (store_ != nullptr) store_->Close().IgnoreError();
  }

  void StartStorage(uint64_t segment = 64 << 20) {
    StoreOptions o;
    o.config.master_server_address = "127.0.0.1:50051";  // unused: the master is in-process
    o.config.local_hostname = "127.0.0.1";
    o.config.global_segment_size = segment;
    o.master = std::make_unique<LocalMasterClient>(&master_);
    auto c = StoreClient::Create(std::move(o));
    ASSERT_TRUE(c.ok()) << c.status();
    store_ = *std::move(c);
    server_ = std::make_unique<StandaloneServer>(store_.get());
    ASSERT_TRUE(server_->Start(StandaloneSocketNameForPort(port_)).ok());
  }
  void StopStorage() {
    server_.reset();
    store_->Close().IgnoreError();
    store_.reset();
  }

  std::unique_ptr<StandaloneClient> Dummy(uint64_t staging = 1 << 20) {
    StandaloneClientOptions o;
    o.address = address_;
    o.staging_bytes = staging;
    auto c = StandaloneClient::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  MasterService master_;
  int port_;
  std::string address_;
  std::unique_ptr<StoreClient> store_;
  std::unique_ptr<StandaloneServer> server_;
};

void Fill(char* p, size_t n, int seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<char>(i * 131 + seed * 7 + (i >> 12));
}

TEST_F(StandaloneTest, AllocatorMemoryMovesInPlaceAndObjectsOutliveTheClient) {
  StartStorage();
  HostMemAllocator allocator;
  constexpr uint64_t kPage = 256 << 10;
  char* pool = static_cast<char*>(*allocator.Alloc(64 * kPage));
  std::vector<std::string> keys;
  std::vector<std::vector<BufferRef>> bufs;
  for (int i = 0; i < 32; ++i) {
    keys.push_back(absl::StrCat("page_", i));
    Fill(pool + i * kPage, kPage, i);
    bufs.push_back({{pool + i * kPage, kPage}});
  }
  {
    auto dummy = Dummy();
    EXPECT_EQ(dummy->hostname(), store_->hostname());
    ASSERT_TRUE(dummy->RegisterBuffer(pool, 64 * kPage).ok());
    for (int rc : dummy->BatchPut(keys, bufs, ReplicateConfig())) EXPECT_EQ(rc, 0);
    EXPECT_EQ(server_->GetStats().regions, 1u) << "the pool is mapped once, not staged";
  }
  // The first client is gone: its mapping is released, its objects are not.
  for (int i = 0; i < 100 && server_->GetStats().regions > 0; ++i) usleep(10000);
  EXPECT_EQ(server_->GetStats().regions, 0u);
  auto again = Dummy();
  for (int rc : again->BatchIsExist(keys)) EXPECT_EQ(rc, 1);
  std::vector<std::vector<BufferRef>> into;
  for (int i = 0; i < 32; ++i) into.push_back({{pool + (32 + i) * kPage, kPage}});
  for (int64_t rc : again->BatchGet(keys, into)) EXPECT_EQ(rc, static_cast<int64_t>(kPage));
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(memcmp(pool + i * kPage, pool + (32 + i) * kPage, kPage), 0) << i;
  }
}

TEST_F(StandaloneTest, OtherMemoryIsStagedIncludingObjectsLargerThanTheStagingBlock) {
  StartStorage();
  auto dummy = Dummy(1 << 20);
  // Three parts per key from ordinary memory; one object is 3 MiB, larger than the staging block.
  std::vector<char> src(5 << 20), dst(5 << 20, 0);
  Fill(src.data(), src.size(), 3);
  std::vector<std::string> keys = {"small_a", "big", "small_b"};
  std::vector<std::vector<BufferRef>> put = {
      {{src.data(), 1000}, {src.data() + 1000, 3000}},
      {{src.data() + 4096, 1 << 20}, {src.data() + 4096 + (1 << 20), 2 << 20}},
      {{src.data() + (4 << 20), 500 << 10}}};
  for (int rc : dummy->BatchPut(keys, put, ReplicateConfig())) EXPECT_EQ(rc, 0);
  std::vector<std::vector<BufferRef>> get = {
      {{dst.data(), 4000}},
      {{dst.data() + 4096, 3 << 20}},
      {{dst.data() + (4 << 20), 100 << 10}, {dst.data() + (4 << 20) + (100 << 10), 400 << 10}}};
  std::vector<int64_t> rc = dummy->BatchGet(keys, get);
  EXPECT_EQ(rc[0], 4000);
  EXPECT_EQ(rc[1], 3 << 20);
  EXPECT_EQ(rc[2], 500 << 10);
  EXPECT_EQ(memcmp(src.data(), dst.data(), 4000), 0);
  EXPECT_EQ(memcmp(src.data() + 4096, dst.data() + 4096, 3 << 20), 0);
  EXPECT_EQ(memcmp(src.data() + (4 << 20), dst.data() + (4 << 20), 500 << 10), 0);
  // Bytes a smaller object does not cover are left as they were.
  std::vector<char> tail(8192, 'z');
  EXPECT_EQ(dummy->BatchGet({"small_a"}, {{{tail.data(), tail.size()}}})[0], 4000);
  EXPECT_EQ(tail[4000], 'z');
  EXPECT_EQ(tail[8191], 'z');
  // Bytes API and the rest of the calls.
  EXPECT_EQ(dummy->PutBytes("bytes", "hello standalone", ReplicateConfig()), 0);
  EXPECT_EQ(*dummy->GetBytes("bytes"), "hello standalone");
  EXPECT_EQ(dummy->GetSize("big"), 3 << 20);
  EXPECT_EQ(dummy->GetSize("nope"), kNotFound);
  std::vector<ObjectReplicas> replicas = dummy->BatchGetReplicas({"big", "nope"});
  ASSERT_EQ(replicas[0].error, ErrorCode::OK);
  ASSERT_EQ(replicas[0].replicas.size(), 1u);
  EXPECT_EQ(replicas[0].replicas[0].segment_name, store_->hostname());
  EXPECT_EQ(replicas[0].size, 3u << 20);
  EXPECT_EQ(replicas[1].error, ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(dummy->HealthCheck(), StoreHealth::kHealthy);
  EXPECT_EQ(dummy->BatchRemove({"small_a", "nope"}, true)[1], kNotFound);
  EXPECT_EQ(dummy->RemoveByRegex("^small", true), 1);
  EXPECT_EQ(dummy->RemoveAll(true), 2);
  EXPECT_EQ(dummy->BatchIsExist({"big"})[0], 0);
}

TEST_F(StandaloneTest, BadBuffersFailTheirKeyAlone) {
  StartStorage();
  auto dummy = Dummy();
  std::vector<char> buf(4096, 'q');
  std::vector<int> rc = dummy->BatchPut(
      {"ok", "null", "", "zero"},
      {{{buf.data(), 4096}}, {{nullptr, 10}}, {{buf.data(), 10}}, {{buf.data(), 0}}},
      ReplicateConfig());
  EXPECT_EQ(rc[0], 0);
  EXPECT_EQ(rc[1], kInvalidParams);
  EXPECT_EQ(rc[2], static_cast<int>(ErrorCode::INVALID_KEY));
  EXPECT_EQ(rc[3], kInvalidParams);
  // A freed allocator block is never used again: the key is staged or refused, not read from
  // memory that is gone.
  HostMemAllocator allocator;
  char* block = static_cast<char*>(*allocator.Alloc(1 << 20));
  Fill(block, 4096, 9);
  ASSERT_EQ(dummy->BatchPut({"from_block"}, {{{block, 4096}}}, ReplicateConfig())[0], 0);
  ASSERT_TRUE(allocator.Free(block).ok());
  std::vector<char> out(4096);
  EXPECT_EQ(dummy->BatchGet({"from_block"}, {{{out.data(), 4096}}})[0], 4096);
  for (int i = 0; i < 100 && server_->GetStats().regions > 1; ++i) usleep(10000);
  EXPECT_LE(server_->GetStats().regions, 1u) << "the freed block was unmapped by the server";
}

TEST_F(StandaloneTest, MalformedFramesCloseOnlyThatConnection) {
  StartStorage();
  auto dummy = Dummy();
  ASSERT_EQ(dummy->PutBytes("k", "v", ReplicateConfig()), 0);
  const std::string junk[] = {
      std::string("GET / HTTP/1.1\r\n\r\n"),
      std::string("MCSA\x05\x01\x00\x00\xff\xff\xff\xff", 12),  // a frame over the size limit
      std::string(
          "\x4d\x43\x53\x41\x05\x01\x00\x00\x08\x00\x00\x00\xff\xff\xff\x7f\x00\x00\x00\x00",
          20),  // a put that does not decode
  };
  for (const std::string& bytes : junk) {
    absl::StatusOr<int> fd = ConnectUnixAbstract(StandaloneSocketNameForPort(port_));
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(SendAll(*fd, bytes.data(), bytes.size()).ok());
    char c;
    EXPECT_LE(read(*fd, &c, 1), 0) << "the server closes a connection that sent junk";
    close(*fd);
  }
  // A region whose memfd is not sealed is refused (the server could be made to fault on it).
  {
    absl::StatusOr<int> fd = ConnectUnixAbstract(StandaloneSocketNameForPort(port_));
    ASSERT_TRUE(fd.ok());
    int memfd = memfd_create("unsealed", MFD_CLOEXEC);
    ASSERT_EQ(ftruncate(memfd, 1 << 20), 0);
    WireWriter w;
    w.U64(1 << 20);
    ASSERT_TRUE(WriteFrame(*fd, StandaloneOp::kMap, w.buf(), memfd).ok());
    StandaloneOp op;
    std::string reply;
    int none = -1;
    ASSERT_TRUE(ReadFrame(*fd, 1 << 20, &op, &reply, &none).ok());
    WireReader r(reply);
    EXPECT_EQ(r.I32(), kInvalidParams);
    close(memfd);
    close(*fd);
  }
  EXPECT_GE(server_->GetStats().bad_requests, 3u);
  EXPECT_EQ(*dummy->GetBytes("k"), "v") << "other connections are unaffected";
}

TEST_F(StandaloneTest, StorageProcessDownGivesCleanErrorsAndARestartIsPickedUp) {
  StandaloneClientOptions o;
  o.address = address_;
  auto none = StandaloneClient::Connect(o);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(ToErrorCode(none.status()), ErrorCode::RPC_FAIL);
  EXPECT_NE(std::string(none.status().message()).find("mooncake_client"), std::string::npos);

  StartStorage();
  auto dummy = Dummy();
  HostMemAllocator allocator;
  char* pool = static_cast<char*>(*allocator.Alloc(1 << 20));
  Fill(pool, 65536, 1);
  ASSERT_EQ(dummy->BatchPut({"a"}, {{{pool, 65536}}}, ReplicateConfig())[0], 0);
  StopStorage();
  EXPECT_EQ(dummy->BatchPut({"b"}, {{{pool, 65536}}}, ReplicateConfig())[0], kRpcFail);
  EXPECT_EQ(dummy->BatchGet({"a"}, {{{pool, 65536}}})[0], kRpcFail);
  EXPECT_EQ(dummy->BatchIsExist({"a"})[0], kRpcFail);
  EXPECT_EQ(dummy->HealthCheck(), StoreHealth::kMasterUnreachable);
  StartStorage();  // a new storage process: the old one's objects went with it
  EXPECT_EQ(dummy->HealthCheck(), StoreHealth::kHealthy);
  ASSERT_EQ(dummy->BatchPut({"c"}, {{{pool, 65536}}}, ReplicateConfig())[0], 0);
  EXPECT_EQ(dummy->BatchGet({"c"}, {{{pool + 65536, 65536}}})[0], 65536);
  EXPECT_EQ(memcmp(pool, pool + 65536, 65536), 0);
}

TEST_F(StandaloneTest, ManyThreadsShareTheClient) {
  StartStorage(256 << 20);
  auto dummy = Dummy();
  HostMemAllocator allocator;
  constexpr int kThreads = 6, kRounds = 20, kPage = 64 << 10;
  char* pool = static_cast<char*>(*allocator.Alloc(uint64_t{kThreads} * 2 * kPage));
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      char* src = pool + t * 2 * kPage;
      char* dst = src + kPage;
      std::vector<char> plain(kPage);
      for (int r = 0; r < kRounds; ++r) {
        const std::string key = absl::StrCat("t", t, "_", r);
        Fill(src, kPage, t * 100 + r);
        if (dummy->BatchPut({key}, {{{src, kPage}}}, ReplicateConfig())[0] != 0) ++wrong;
        // Alternate: read back into shared memory, then into plain (staged) memory.
        char* into = r % 2 == 0 ? dst : plain.data();
        if (dummy->BatchGet({key}, {{{into, kPage}}})[0] != kPage) ++wrong;
        if (memcmp(src, into, kPage) != 0) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace mooncake
