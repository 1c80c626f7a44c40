// The production TransferEngine in the simulated world (sim_engine.h): its routing, range checks
// across MR chunks, and what it forgets about peers that are gone.
#include "sim/cluster/sim_engine.h"

#include <string.h>
#include <sys/mman.h>

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"

namespace sim {
namespace {

using mooncake::RouteKind;
using mooncake::TransferBatch;
using mooncake::TransferEngine;
using mooncake::TransferRequest;
using Op = TransferRequest::Opcode;

// Memory that outlives the engines registering it.
struct Memory {
  explicit Memory(size_t n) : size(n) {
    p = static_cast<char*>(
        mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  }
  ~Memory() { munmap(p, size); }
  char* p;
  size_t size;
};

class SimEngineTest : public ::testing::Test {
 protected:
  void Start(SimEngineOptions options) {
    engines_ = std::make_unique<SimEngines>(&world_, options);
    a_ = world_.AddHost("a", {"erdma_0", "erdma_1"});
    b_ = world_.AddHost("b", {"erdma_0", "erdma_1"});
  }
  std::unique_ptr<SimEngine> Engine(const std::string& name, HostId host,
                                    const std::shared_ptr<bool>& alive) {
    mooncake::RdmaOptions rdma;
    rdma.devices = {"erdma_0", "erdma_1"};
    auto e = engines_->Create(name, host, rdma, alive);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  // Runs one batch to completion; returns its statuses.
  std::vector<absl::Status> Run(TransferEngine& engine, const std::vector<TransferRequest>& r) {
    bool done = false;
    std::shared_ptr<TransferBatch> batch =
        engine.Submit(r, [&done](const TransferBatch&) { done = true; });
    EXPECT_TRUE(world_.RunFor([&] { return done; }, 2 * kSecond)) << "the batch never finished";
    return batch->statuses();
  }

  World world_{7};
  std::unique_ptr<SimEngines> engines_;
  HostId a_ = kNoId, b_ = kNoId;
};

// Regression (defect 1): an RDMA segment publishes one buffer per MR chunk, and the engine
// required a request's whole range to lie in one of them, so every request that crossed a chunk
// boundary failed with INVALID_PARAMS (on erdma, any object across a 64 GB boundary). Ranges may
// now span adjacent chunks, on both sides of the transfer.
TEST_F(SimEngineTest, RequestsSpanningMrChunksMoveTheRightBytes) {
  SimEngineOptions o;
  o.max_mr_chunk = (64 << 10) + 512;  // no multiple of anything a request uses
  Start(o);
  auto alive = std::make_shared<bool>(true);
  auto client = Engine("a:1", a_, alive);
  auto storage = Engine("b:1", b_, alive);
  Memory remote(1 << 20), local(1 << 20), back(1 << 20);
  for (size_t i = 0; i < local.size; ++i) local.p[i] = static_cast<char>(i * 7 + 3);
  ASSERT_TRUE(storage->engine().RegisterLocalMemory(remote.p, remote.size).ok());
  ASSERT_TRUE(client->engine().RegisterLocalMemory(local.p, local.size, "cpu:0", false).ok());
  ASSERT_TRUE(client->engine().RegisterLocalMemory(back.p, back.size, "cpu:0", false).ok());
  auto seg = client->engine().OpenSegment("b:1");
  ASSERT_TRUE(seg.ok()) << seg.status();
  EXPECT_EQ(*client->engine().RouteTo(*seg), RouteKind::kRdma);
  const uint64_t r = reinterpret_cast<uint64_t>(remote.p);
  const uint64_t len = 256 << 10;  // spans four remote chunks and four local ones
  auto st = Run(client->engine(), {{Op::kWrite, local.p + 1000, *seg, r + 60000, len}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(memcmp(remote.p + 60000, local.p + 1000, len), 0);
  st = Run(client->engine(), {{Op::kRead, back.p + 333, *seg, r + 60000, len}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(memcmp(back.p + 333, local.p + 1000, len), 0);
  // A range that runs past the last chunk is still refused, and writes nothing.
  std::vector<char> before(remote.p, remote.p + remote.size);
  st = Run(client->engine(), {{Op::kWrite, local.p, *seg, r + remote.size - 4096, 8192}});
  EXPECT_EQ(mooncake::ToErrorCode(st[0]), mooncake::ErrorCode::INVALID_PARAMS) << st[0];
  EXPECT_EQ(memcmp(remote.p, before.data(), remote.size), 0);
}

// Regression (defect 7): nothing ever pruned the endpoints peers had connected to an engine, so a
// client restarting under a new name (a new port) left its QPs behind on every storage node it had
// talked to. Peers that are gone are now found by a probe and their endpoints dropped.
TEST_F(SimEngineTest, EndpointsOfPeersThatAreGoneAreDropped) {
  SimEngineOptions o;
  o.accepted_probe_interval = absl::Milliseconds(50);
  Start(o);
  auto storage_alive = std::make_shared<bool>(true);
  auto storage = Engine("b:1", b_, storage_alive);
  Memory remote(1 << 20), local(1 << 20);
  ASSERT_TRUE(storage->engine().RegisterLocalMemory(remote.p, remote.size).ok());
  const uint64_t r = reinterpret_cast<uint64_t>(remote.p);
  std::unique_ptr<SimEngine> client;
  std::shared_ptr<bool> client_alive;
  for (int incarnation = 0; incarnation < 5; ++incarnation) {
    client.reset();  // the previous process is gone: it exits without saying so
    client_alive = std::make_shared<bool>(true);
    client = Engine(absl::StrCat("a:", 100 + incarnation), a_, client_alive);
    ASSERT_TRUE(client->engine().RegisterLocalMemory(local.p, local.size, "cpu:0", false).ok());
    auto seg = client->engine().OpenSegment("b:1");
    ASSERT_TRUE(seg.ok());
    ASSERT_TRUE(Run(client->engine(), {{Op::kWrite, local.p, *seg, r, 4096}})[0].ok());
  }
  world_.RunFor([] { return false; }, 500 * kMillisecond);  // probes run
  EXPECT_EQ(storage->engine().GetStats().rdma_accepted, 1u) << "endpoints of dead peers remain";
  // The live client's endpoints survived the probes.
  auto seg = client->engine().OpenSegment("b:1");
  ASSERT_TRUE(seg.ok());
  EXPECT_TRUE(Run(client->engine(), {{Op::kRead, local.p, *seg, r, 4096}})[0].ok());
}

// Regression (defect 7): segments were never forgotten either. A segment unused for
// segment_idle_timeout is closed: its rails and QPs are torn down and its entry goes away.
TEST_F(SimEngineTest, IdleSegmentsAreForgotten) {
  SimEngineOptions o;
  o.segment_idle_timeout = absl::Milliseconds(200);
  Start(o);
  auto alive = std::make_shared<bool>(true);
  auto client = Engine("a:1", a_, alive);
  Memory local(1 << 20);
  ASSERT_TRUE(client->engine().RegisterLocalMemory(local.p, local.size, "cpu:0", false).ok());
  std::vector<std::unique_ptr<SimEngine>> storage;
  std::vector<std::unique_ptr<Memory>> memory;
  for (int i = 0; i < 3; ++i) {
    storage.push_back(Engine(absl::StrCat("b:", i + 1), b_, alive));
    memory.push_back(std::make_unique<Memory>(1 << 20));
    ASSERT_TRUE(storage.back()->engine().RegisterLocalMemory(memory.back()->p, 1 << 20).ok());
    auto seg = client->engine().OpenSegment(absl::StrCat("b:", i + 1));
    ASSERT_TRUE(seg.ok());
    uint64_t r = reinterpret_cast<uint64_t>(memory.back()->p);
    ASSERT_TRUE(Run(client->engine(), {{Op::kWrite, local.p, *seg, r, 4096}})[0].ok());
  }
  EXPECT_EQ(client->engine().GetStats().segments, 3u);
  EXPECT_EQ(client->engine().GetStats().rdma_peers, 3u);
  world_.RunFor([] { return false; }, 500 * kMillisecond);
  EXPECT_EQ(client->engine().GetStats().segments, 0u);
  EXPECT_EQ(client->engine().GetStats().rdma_peers, 0u);
  // Opening one again works as before.
  auto seg = client->engine().OpenSegment("b:2");
  ASSERT_TRUE(seg.ok());
  uint64_t r = reinterpret_cast<uint64_t>(memory[1]->p);
  EXPECT_TRUE(Run(client->engine(), {{Op::kRead, local.p, *seg, r, 4096}})[0].ok());
}

// Regression (defect 9): Transfer waited without the bound its header promises. A batch that
// cannot finish (here: nobody drives the engine's progress) now returns TRANSFER_FAIL after
// transfer_timeout plus a margin instead of blocking its caller forever.
TEST_F(SimEngineTest, SynchronousTransferIsBounded) {
  SimEngineOptions o;
  o.transfer_timeout = absl::Milliseconds(100);
  o.connect_timeout = absl::Milliseconds(100);
  Start(o);
  auto alive = std::make_shared<bool>(true);
  auto client = Engine("a:1", a_, alive);
  auto storage = Engine("b:1", b_, alive);
  Memory remote(1 << 20), local(1 << 20);
  ASSERT_TRUE(storage->engine().RegisterLocalMemory(remote.p, remote.size).ok());
  ASSERT_TRUE(client->engine().RegisterLocalMemory(local.p, local.size, "cpu:0", false).ok());
  auto seg = client->engine().OpenSegment("b:1");
  ASSERT_TRUE(seg.ok());
  const absl::Time t0 = absl::Now();
  std::vector<absl::Status> st = client->engine().Transfer(
      {{Op::kWrite, local.p, *seg, reinterpret_cast<uint64_t>(remote.p), 4096}});
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  EXPECT_EQ(mooncake::ToErrorCode(st[0]), mooncake::ErrorCode::TRANSFER_FAIL) << st[0];
  EXPECT_NE(st[0].message().find("did not finish"), std::string::npos) << st[0];
}

// Two engines on one host reach each other over RDMA through the NIC (no shared memory in the
// simulator), and an engine's own segment is a memcpy.
TEST_F(SimEngineTest, SameHostPeersUseRdmaLoopbackAndTheOwnSegmentIsACopy) {
  Start(SimEngineOptions());
  auto alive = std::make_shared<bool>(true);
  auto one = Engine("a:1", a_, alive);
  auto two = Engine("a:2", a_, alive);
  Memory m1(1 << 20), m2(1 << 20);
  for (size_t i = 0; i < m1.size; ++i) m1.p[i] = static_cast<char>(i);
  ASSERT_TRUE(one->engine().RegisterLocalMemory(m1.p, m1.size).ok());
  ASSERT_TRUE(two->engine().RegisterLocalMemory(m2.p, m2.size).ok());
  auto other = one->engine().OpenSegment("a:2");
  auto self = one->engine().OpenSegment("a:1");
  ASSERT_TRUE(other.ok() && self.ok());
  EXPECT_EQ(*one->engine().RouteTo(*other), RouteKind::kRdma);
  EXPECT_EQ(*one->engine().RouteTo(*self), RouteKind::kLocal);
  EXPECT_TRUE(one->engine().SameHost("a:2"));
  const uint64_t r2 = reinterpret_cast<uint64_t>(m2.p);
  ASSERT_TRUE(Run(one->engine(), {{Op::kWrite, m1.p, *other, r2, 1 << 19}})[0].ok());
  EXPECT_EQ(memcmp(m2.p, m1.p, 1 << 19), 0);
  const uint64_t r1 = reinterpret_cast<uint64_t>(m1.p);
  ASSERT_TRUE(Run(one->engine(), {{Op::kWrite, m1.p, *self, r1 + (1 << 19), 1 << 19}})[0].ok());
  EXPECT_EQ(memcmp(m1.p + (1 << 19), m1.p, 1 << 19), 0);
}

}  // namespace
}  // namespace sim
