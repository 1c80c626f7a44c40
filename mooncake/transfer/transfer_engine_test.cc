// TransferEngine with two engines in one process, talking over loopback (TCP and shared memory).
#include "mooncake/transfer/transfer_engine.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <numeric>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/metadata/http_metadata_server.h"
#include "mooncake/metadata/metadata_client.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

using Op = TransferRequest::Opcode;

std::unique_ptr<TransferEngine> NewEngine(bool allow_shm = true) {
  TransferEngineOptions o;
  o.local_server_name = "127.0.0.1";
  o.allow_shm = allow_shm;
  auto e = TransferEngine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

void Fill(std::vector<char>& v, int seed) {
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<char>((i * 7 + seed) & 0xff);
}

// Parameterized over the remote segment's route: plain memory (TCP) or memfd (shared memory).
class EngineRouteTest : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr uint64_t kSize = 8 << 20;
  void SetUp() override {
    const bool shm = GetParam();
    client_ = NewEngine(shm);
    server_ = NewEngine(shm);
    ASSERT_TRUE(client_ && server_);
    if (shm) {
      auto mem = server_->AllocateSharedMemory(kSize);
      ASSERT_TRUE(mem.ok()) << mem.status();
      remote_ = static_cast<char*>(*mem);
    } else {
      heap_.assign(kSize, 0);
      remote_ = heap_.data();
      ASSERT_TRUE(server_->RegisterLocalMemory(remote_, kSize).ok());
    }
    local_.resize(kSize);
    Fill(local_, 3);
    ASSERT_TRUE(client_->RegisterLocalMemory(local_.data(), kSize).ok());
    auto seg = client_->OpenSegment(server_->segment_name());
    ASSERT_TRUE(seg.ok()) << seg.status();
    seg_ = *seg;
    EXPECT_EQ(*client_->RouteTo(seg_), shm ? RouteKind::kShm : RouteKind::kTcp);
  }
  uint64_t R(uint64_t off) { return reinterpret_cast<uint64_t>(remote_) + off; }

  std::unique_ptr<TransferEngine> client_, server_;
  std::vector<char> heap_;
  char* remote_ = nullptr;
  std::vector<char> local_;
  SegmentId seg_ = 0;
};

TEST_P(EngineRouteTest, WriteThenReadBackIdenticalBytes) {
  auto st = client_->Transfer({{Op::kWrite, local_.data(), seg_, R(0), kSize}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(memcmp(remote_, local_.data(), kSize), 0);
  std::vector<char> back(kSize);
  ASSERT_TRUE(client_->UnregisterLocalMemory(local_.data()).ok());
  ASSERT_TRUE(client_->RegisterLocalMemory(back.data(), kSize).ok());
  st = client_->Transfer({{Op::kRead, back.data(), seg_, R(0), kSize}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(back, local_);
}

TEST_P(EngineRouteTest, LargeBatchOfPages) {
  const int n = 512;
  const uint64_t page = kSize / n;
  std::vector<TransferRequest> reqs;
  for (int i = 0; i < n; ++i) {
    // Scatter: local page i goes to remote page (i * 37) % n.
    reqs.push_back({Op::kWrite, local_.data() + i * page, seg_, R(((i * 37) % n) * page), page});
  }
  for (const absl::Status& s : client_->Transfer(reqs)) ASSERT_TRUE(s.ok()) << s;
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(memcmp(remote_ + ((i * 37) % n) * page, local_.data() + i * page, page), 0) << i;
  }
}

TEST_P(EngineRouteTest, ConcurrentBatchesFromSeveralThreads) {
  const int threads = 4;
  const uint64_t slice = kSize / threads;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        std::vector<TransferRequest> reqs;
        for (uint64_t off = 0; off < slice; off += 64 << 10) {
          uint64_t at = t * slice + off;
          reqs.push_back({Op::kWrite, local_.data() + at, seg_, R(at), 64 << 10});
        }
        for (const absl::Status& s : client_->Transfer(reqs)) EXPECT_TRUE(s.ok()) << s;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(memcmp(remote_, local_.data(), kSize), 0);
}

TEST_P(EngineRouteTest, BadAddressesGetClearErrorsAndWriteNothing) {
  memset(remote_, 0x5A, kSize);
  std::vector<char> unregistered(4096, 1);
  auto st = client_->Transfer({
      {Op::kWrite, local_.data(), seg_, R(kSize - 10), 20},     // straddles the end
      {Op::kWrite, local_.data(), seg_, R(0) - 4096, 4096},     // before the buffer
      {Op::kWrite, unregistered.data(), seg_, R(0), 4096},      // local not registered
      {Op::kWrite, local_.data(), seg_ + 999, R(0), 4096},      // unknown segment
      {Op::kWrite, local_.data() + kSize - 8, seg_, R(0), 16},  // local straddles its end
      {Op::kWrite, local_.data(), seg_, R(4096), 4096},         // the one good request
  });
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ToErrorCode(st[i]), ErrorCode::INVALID_PARAMS) << i << ": " << st[i];
  }
  EXPECT_TRUE(st[5].ok()) << st[5];
  for (uint64_t i = 0; i < kSize; ++i) {
    if (i >= 4096 && i < 8192) continue;
    ASSERT_EQ(remote_[i], 0x5A) << "stray byte at " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Routes, EngineRouteTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Shm" : "Tcp"; });

// A replica placed while the segment belonged to an earlier process (another instance) is refused
// with INVALID_REPLICA, and nothing is written: the memory now holds other objects.
TEST_P(EngineRouteTest, ReplicaOfAnotherIncarnationIsRefusedAndWritesNothing) {
  std::vector<char> before(remote_, remote_ + 4096);
  auto st =
      client_->Transfer({{Op::kWrite, local_.data(), seg_, R(0), 4096, server_->instance() + 1}});
  EXPECT_EQ(ToErrorCode(st[0]), ErrorCode::INVALID_REPLICA) << st[0];
  EXPECT_EQ(std::vector<char>(remote_, remote_ + 4096), before);
  st = client_->Transfer({{Op::kWrite, local_.data(), seg_, R(0), 4096, server_->instance()}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(0, memcmp(remote_, local_.data(), 4096));
  EXPECT_NE(client_->instance(), server_->instance());
}

TEST(TransferEngineTest, SameEngineUsesMemcpyAndChecksRanges) {
  auto e = NewEngine();
  std::vector<char> a(1 << 20), b(1 << 20, 0);
  Fill(a, 1);
  ASSERT_TRUE(e->RegisterLocalMemory(a.data(), a.size()).ok());
  ASSERT_TRUE(e->RegisterLocalMemory(b.data(), b.size()).ok());
  auto seg = e->OpenSegment(e->segment_name());
  ASSERT_TRUE(seg.ok());
  EXPECT_EQ(*e->RouteTo(*seg), RouteKind::kLocal);
  auto st =
      e->Transfer({{Op::kWrite, a.data(), *seg, reinterpret_cast<uint64_t>(b.data()), a.size()}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(a, b);
  st = e->Transfer(
      {{Op::kWrite, a.data(), *seg, reinterpret_cast<uint64_t>(b.data()) + 1, b.size()}});
  EXPECT_EQ(ToErrorCode(st[0]), ErrorCode::INVALID_PARAMS);
  st = e->Transfer(
      {{Op::kRead, a.data(), *seg, reinterpret_cast<uint64_t>(b.data()), 64, e->instance() ^ 1}});
  EXPECT_EQ(ToErrorCode(st[0]), ErrorCode::INVALID_REPLICA);
}

TEST(TransferEngineTest, OwnerValidatesAgainstItsLiveRegistrations) {
  // The client's cached descriptor still lists a buffer the owner has since unregistered: the owner
  // refuses, and the memory is not touched.
  auto client = NewEngine(false), server = NewEngine(false);
  std::vector<char> remote(1 << 20, 0x11), local(1 << 20, 0x22);
  ASSERT_TRUE(server->RegisterLocalMemory(remote.data(), remote.size()).ok());
  ASSERT_TRUE(client->RegisterLocalMemory(local.data(), local.size()).ok());
  auto seg = client->OpenSegment(server->segment_name());
  ASSERT_TRUE(seg.ok());
  ASSERT_TRUE(server->UnregisterLocalMemory(remote.data()).ok());
  auto st = client->Transfer(
      {{Op::kWrite, local.data(), *seg, reinterpret_cast<uint64_t>(remote.data()), 4096}});
  EXPECT_EQ(ToErrorCode(st[0]), ErrorCode::INVALID_PARAMS) << st[0];
  EXPECT_EQ(remote[0], 0x11);
}

TEST(TransferEngineTest, OpenSegmentErrors) {
  auto e = NewEngine();
  EXPECT_EQ(ToErrorCode(e->OpenSegment("").status()), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(e->OpenSegment("no-port").status()), ErrorCode::SEGMENT_NOT_FOUND);
  // Nothing listens on port 1.
  EXPECT_EQ(ToErrorCode(e->OpenSegment("127.0.0.1:1").status()), ErrorCode::SEGMENT_NOT_FOUND);
  EXPECT_FALSE(e->CloseSegment(12345).ok());
}

TEST(TransferEngineTest, SegmentNameIsTheAdvertisedHostAndBoundPort) {
  TransferEngineOptions o;
  o.local_server_name = "127.0.0.1";
  auto e = TransferEngine::Create(o);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)->segment_name(), "127.0.0.1:" + std::to_string((*e)->rpc_port()));
  // A taken port is a clear error, not a silent different port.
  o.local_server_name = (*e)->segment_name();
  auto clash = TransferEngine::Create(o);
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find("cannot listen"), absl::string_view::npos);
  o.local_server_name = "127.0.0.1";
  o.protocol = "carrier-pigeon";
  EXPECT_EQ(ToErrorCode(TransferEngine::Create(o).status()), ErrorCode::NOT_SUPPORTED);
}

TEST(TransferEngineTest, RegistrationDoesNotTouchPages) {
  // 64 GiB of reserved (never touched) address space registers instantly without committing memory.
  auto e = NewEngine();
  const uint64_t size = 64ull << 30;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_TRUE(e->RegisterLocalMemory(p, size).ok());
  ASSERT_TRUE(e->UnregisterLocalMemory(p).ok());
  munmap(p, size);
}

TEST(TransferEngineTest, MalformedFramesDoNotDisturbOtherClients) {
  auto client = NewEngine(false), server = NewEngine(false);
  std::vector<char> remote(1 << 20, 0), local(1 << 20, 0x33);
  ASSERT_TRUE(server->RegisterLocalMemory(remote.data(), remote.size()).ok());
  ASSERT_TRUE(client->RegisterLocalMemory(local.data(), local.size()).ok());
  auto seg = client->OpenSegment(server->segment_name());
  ASSERT_TRUE(seg.ok());
  absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server->rpc_port(), absl::Seconds(1));
  ASSERT_TRUE(fd.ok());
  std::vector<char> junk(4096, 0x7f);
  ASSERT_TRUE(SendAll(*fd, junk.data(), junk.size()).ok());
  close(*fd);
  auto st = client->Transfer(
      {{Op::kWrite, local.data(), *seg, reinterpret_cast<uint64_t>(remote.data()), local.size()}});
  EXPECT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(remote, local);
}

}  // namespace
}  // namespace mooncake

namespace mooncake {
namespace {

TEST(TransferEngineMetadataTest, SegmentsResolveThroughTheHttpMetadataServer) {
  metadata::HttpMetadataServerOptions mo;
  mo.host = "127.0.0.1";
  mo.port = 0;
  metadata::HttpMetadataServer server(mo);
  ASSERT_TRUE(server.Start().ok());
  TransferEngineOptions o;
  o.local_server_name = "127.0.0.1";
  o.metadata_server = "http://127.0.0.1:" + std::to_string(server.port()) + "/metadata";
  o.allow_shm = false;
  auto a = TransferEngine::Create(o);
  auto b = TransferEngine::Create(o);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  std::vector<char> remote(1 << 20, 0), local(1 << 20, 0x42);
  ASSERT_TRUE((*b)->RegisterLocalMemory(remote.data(), remote.size()).ok());
  ASSERT_TRUE((*a)->RegisterLocalMemory(local.data(), local.size()).ok());
  auto seg = (*a)->OpenSegment((*b)->segment_name());
  ASSERT_TRUE(seg.ok()) << seg.status();
  auto st = (*a)->Transfer(
      {{Op::kWrite, local.data(), *seg, reinterpret_cast<uint64_t>(remote.data()), local.size()}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(remote, local);
  // A name nobody published is SEGMENT_NOT_FOUND; a dead metadata server fails engine start-up.
  EXPECT_EQ(ToErrorCode((*a)->OpenSegment("127.0.0.1:9").status()), ErrorCode::SEGMENT_NOT_FOUND);
  std::string name = (*b)->segment_name();
  b->reset();  // unpublishes
  auto gone = metadata::NewMetadataClient(o.metadata_server);
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ((*gone)->Get("mooncake/ram/" + name).status().code(), absl::StatusCode::kNotFound);
  server.Stop();
  o.metadata_server = "http://127.0.0.1:1/metadata";
  EXPECT_FALSE(TransferEngine::Create(o).ok());
}

}  // namespace
}  // namespace mooncake

namespace mooncake {
namespace {

TEST(TransferEngineRefreshTest, MemoryRegisteredAfterThePeerOpenedTheSegmentIsReachable) {
  for (bool shm : {false, true}) {
    auto client = NewEngine(shm), server = NewEngine(shm);
    std::vector<char> first(1 << 16, 0), later(1 << 16, 0), local(1 << 16, 0x5c);
    ASSERT_TRUE(server->RegisterLocalMemory(first.data(), first.size()).ok());
    ASSERT_TRUE(client->RegisterLocalMemory(local.data(), local.size()).ok());
    auto seg = client->OpenSegment(server->segment_name());
    ASSERT_TRUE(seg.ok());
    ASSERT_TRUE(server->RegisterLocalMemory(later.data(), later.size()).ok());
    auto st = client->Transfer(
        {{Op::kWrite, local.data(), *seg, reinterpret_cast<uint64_t>(later.data()), 4096}});
    EXPECT_TRUE(st[0].ok()) << "shm=" << shm << ": " << st[0];
    EXPECT_EQ(later[4095], 0x5c);
  }
}

TEST(TransferEngineRefreshTest, SharedBufferFreedAndReallocatedIsNotWrittenThroughAStaleMapping) {
  auto client = NewEngine(), server = NewEngine();
  std::vector<char> local(1 << 20, 0x21);
  ASSERT_TRUE(client->RegisterLocalMemory(local.data(), local.size()).ok());
  auto first = server->AllocateSharedMemory(1 << 20);
  ASSERT_TRUE(first.ok());
  auto seg = client->OpenSegment(server->segment_name());
  ASSERT_TRUE(seg.ok());
  ASSERT_EQ(*client->RouteTo(*seg), RouteKind::kShm);
  uint64_t addr = reinterpret_cast<uint64_t>(*first);
  ASSERT_TRUE(client->Transfer({{Op::kWrite, local.data(), *seg, addr, 4096}})[0].ok());
  // Free and allocate again: the kernel usually hands back the same address, a new memfd.
  ASSERT_TRUE(server->FreeSharedMemory(*first).ok());
  auto second = server->AllocateSharedMemory(1 << 20);
  ASSERT_TRUE(second.ok());
  uint64_t addr2 = reinterpret_cast<uint64_t>(*second);
  memset(local.data(), 0x42, 4096);
  auto st = client->Transfer({{Op::kWrite, local.data(), *seg, addr2, 4096}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(static_cast<char*>(*second)[0], 0x42) << "the write went to the freed buffer";
  EXPECT_EQ(static_cast<char*>(*second)[4095], 0x42);
}

}  // namespace
}  // namespace mooncake
