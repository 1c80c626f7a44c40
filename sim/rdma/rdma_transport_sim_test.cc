// The production RdmaTransport on simulated NICs: striping efficiency, failover, access errors,
// determinism, handshakes off the poller, and its limits.
#include <string.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/executor.h"
#include "mooncake/transfer/transfer_batch.h"
#include "sim/rdma/rdma_cluster.h"
#include "sim/rdma/rdma_scenarios.h"

namespace sim {
namespace {

class StripingTest : public ::testing::TestWithParam<int> {};

TEST_P(StripingTest, LargeWritesReachNinetyFivePercentOfAggregateLineRate) {
  const int nics = GetParam();
  ScenarioResult r = StripingScenario(/*seed=*/1, nics, uint64_t{1} << 30, /*read=*/false);
  ASSERT_TRUE(r.ok) << r.report;
  EXPECT_GE(r.efficiency, 0.95) << r.report;
  std::printf("%s", r.report.c_str());
}

INSTANTIATE_TEST_SUITE_P(Nics, StripingTest, ::testing::Values(2, 4, 8));

TEST(StripingReadTest, LargeReadsStripeToo) {
  ScenarioResult r = StripingScenario(1, 2, uint64_t{1} << 30, /*read=*/true);
  ASSERT_TRUE(r.ok) << r.report;
  EXPECT_GE(r.efficiency, 0.95) << r.report;
}

TEST(FailoverTest, NicDownMidBatchEveryRequestCompletesAndTheRailComesBack) {
  ScenarioResult r = FailoverScenario(3);
  EXPECT_TRUE(r.ok) << r.report;
  std::printf("%s", r.report.c_str());
}

// As on rxe, requests on a QP whose own NIC went down fail at once with LOC_QP_OP_ERR: that is
// the rail failing, not the caller's buffer, so the requests move to the other rail.
TEST(FailoverTest, LocalQpOperationErrorsOnADownNicFailOverToo) {
  ScenarioResult r = FailoverScenario(3, SimVerbsOptions::LocalPortDown::kFailAtSend);
  EXPECT_TRUE(r.ok) << r.report;
  std::printf("%s", r.report.c_str());
}

TEST(AccessErrorTest, StaleRkeyFailsOnlyThatRequestWithAClearError) {
  ScenarioResult r = AccessErrorScenario(4);
  EXPECT_TRUE(r.ok) << r.report;
}

TEST(DeterminismTest, SameSeedSameTraceDifferentSeedDifferentTrace) {
  ScenarioResult a = FuzzScenario(11), b = FuzzScenario(11), c = FuzzScenario(12);
  EXPECT_EQ(a.trace_hash, b.trace_hash);
  EXPECT_EQ(a.events, b.events);
  EXPECT_NE(a.trace_hash, c.trace_hash);
  ScenarioResult f1 = FailoverScenario(5), f2 = FailoverScenario(5);
  EXPECT_EQ(f1.trace_hash, f2.trace_hash);
}

}  // namespace
}  // namespace sim

namespace sim {
namespace {

TEST(MemoryChunkingTest, RegistrationsAreSplitBelowTheMrLimitAndTransfersSpanChunks) {
  RdmaClusterOptions o;
  o.seed = 9;
  o.memory_per_host = 8 << 20;
  o.rdma.max_mr_chunk = 1 << 20;  // as if the NIC capped an MR at 1 MiB
  RdmaCluster c(o);
  ASSERT_TRUE(c.Init().ok());
  // One descriptor buffer per 1 MiB chunk, each with one rkey per NIC.
  ASSERT_EQ(c.descriptor(1)->buffers.size(), 8u);
  EXPECT_EQ(c.descriptor(1)->buffers[3].rkey.size(), 2u);
  for (int i = 0; i < (4 << 20); ++i) c.memory(0)[i] = static_cast<char>(i * 7 + 1);
  // 3 MiB starting mid-chunk: the slices are cut at chunk boundaries on both sides.
  auto batch = std::make_shared<mooncake::TransferBatch>(1);
  c.transport(0).Submit(batch, 0, /*write=*/true, c.addr(0, 512 << 10), c.addr(1, 1536 << 10),
                        3 << 20, c.descriptor(1));
  ASSERT_TRUE(c.RunUntilDone(*batch, kSecond));
  ASSERT_TRUE(batch->status(0).ok()) << batch->status(0);
  EXPECT_EQ(memcmp(c.memory(0) + (512 << 10), c.memory(1) + (1536 << 10), 3 << 20), 0);
}

}  // namespace
}  // namespace sim

namespace sim {
namespace {

// The rail handshake carries the sender's process instance, so a peer can tell it reached a later
// incarnation than the descriptor it holds; malformed handshakes are errors, not crashes.
TEST(EndpointInfoTest, RoundTripsThroughJsonWithItsInstance) {
  mooncake::EndpointInfo info;
  info.segment = "host0:15000";
  info.local_nic = "erdma_0";
  info.peer_nic = "erdma_1";
  info.lid = 7;
  info.psn = 42;
  info.qp_nums = {100, 101};
  info.instance = 0x1234567890abcdefULL;
  auto back = mooncake::ParseEndpointInfo(mooncake::EndpointInfoToJson(info));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->segment, info.segment);
  EXPECT_EQ(back->qp_nums, info.qp_nums);
  EXPECT_EQ(back->instance, info.instance);
  EXPECT_FALSE(mooncake::ParseEndpointInfo("{\"segment\": 3}").ok());
  EXPECT_FALSE(mooncake::ParseEndpointInfo("not json").ok());
}

}  // namespace
}  // namespace sim

namespace sim {
namespace {

// Runs each task on a thread of its own and counts the finished ones.
class ThreadPerTask final : public mooncake::Executor {
 public:
  ~ThreadPerTask() override {
    for (std::thread& t : threads_) t.join();
  }
  void Schedule(std::function<void()> fn) override {
    threads_.emplace_back([this, fn = std::move(fn)] {
      fn();
      finished_.fetch_add(1);
    });
  }
  int finished() const { return finished_.load(); }

 private:
  std::vector<std::thread> threads_;
  std::atomic<int> finished_{0};
};

// Regression (defect 5): a rail's handshake ran on the only poller thread, so a peer whose
// control port did not answer stalled every transfer of the engine for the connect timeout. The
// handshake now runs on an executor; the poller keeps serving the other peers meanwhile.
TEST(RdmaHandshakeTest, APeerThatDoesNotAnswerDoesNotStallThePoller) {
  World world(11);
  const HostId a = world.AddHost("a", {"erdma_0"});
  const HostId b = world.AddHost("b", {"erdma_0"});
  const HostId c = world.AddHost("c", {"erdma_0"});
  absl::Notification release_b;
  std::unique_ptr<mooncake::RdmaTransport> tc;
  class Handshake final : public mooncake::RdmaHandshake {
   public:
    Handshake(absl::Notification* release_b, std::unique_ptr<mooncake::RdmaTransport>* tc)
        : release_b_(release_b), tc_(tc) {}
    absl::StatusOr<mooncake::EndpointInfo> Exchange(const std::string& peer,
                                                    const mooncake::EndpointInfo& mine) override {
      if (peer == "b") {  // its control port is black-holed
        release_b_->WaitForNotificationWithTimeout(absl::Seconds(20));
        return absl::DeadlineExceededError("connect b: timed out");
      }
      return (*tc_)->Accept(mine);
    }

   private:
    absl::Notification* const release_b_;
    std::unique_ptr<mooncake::RdmaTransport>* const tc_;
  } handshake(&release_b, &tc);
  ThreadPerTask executor;
  mooncake::RdmaOptions o;
  o.devices = {"erdma_0"};
  o.max_attempts = 1;
  mooncake::RdmaTransport ta(world.verbs(a), world.clock(), &handshake, "a", o, &executor);
  mooncake::RdmaTransport tb(world.verbs(b), world.clock(), &handshake, "b", o);
  tc = std::make_unique<mooncake::RdmaTransport>(world.verbs(c), world.clock(), &handshake, "c", o);
  ASSERT_TRUE(ta.Init().ok() && tb.Init().ok() && tc->Init().ok());
  constexpr size_t kBytes = 1 << 20;
  std::vector<char> mem_a(kBytes, 'a'), mem_b(kBytes), mem_c(kBytes);
  auto addr = [](std::vector<char>& v) { return reinterpret_cast<uint64_t>(v.data()); };
  ASSERT_TRUE(ta.RegisterMemory(addr(mem_a), kBytes, false).ok());
  ASSERT_TRUE(tb.RegisterMemory(addr(mem_b), kBytes, true).ok());
  ASSERT_TRUE(tc->RegisterMemory(addr(mem_c), kBytes, true).ok());
  auto describe = [](mooncake::RdmaTransport& t, const std::string& name) {
    auto d = std::make_shared<mooncake::SegmentDescriptor>();
    d->name = name;
    t.FillDescriptor(d.get());
    return std::shared_ptr<const mooncake::SegmentDescriptor>(d);
  };
  auto to_b = std::make_shared<mooncake::TransferBatch>(1);
  auto to_c = std::make_shared<mooncake::TransferBatch>(1);
  ta.Submit(to_b, 0, true, addr(mem_a), addr(mem_b), 64 << 10, describe(tb, "b"));
  ta.Submit(to_c, 0, true, addr(mem_a), addr(mem_c), 64 << 10, describe(*tc, "c"));
  ta.Poll();  // starts both handshakes and returns: b's is left hanging
  for (int i = 0; i < 2000 && executor.finished() < 1; ++i) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_EQ(executor.finished(), 1) << "c's handshake did not finish on its own";
  auto polls = [&] {
    ta.Poll();
    tc->Poll();
  };
  world.sim().ScheduleRepeating(2 * kMicrosecond, "poll", [&] {
    polls();
    return !to_c->Done();
  });
  ASSERT_TRUE(world.RunFor([&] { return to_c->Done(); }, kSecond));
  EXPECT_TRUE(to_c->status(0).ok()) << to_c->status(0);
  EXPECT_EQ(mem_c[0], 'a');
  EXPECT_FALSE(to_b->Done()) << "b's handshake is still hanging";
  release_b.Notify();
  for (int i = 0; i < 2000 && executor.finished() < 2; ++i) absl::SleepFor(absl::Milliseconds(1));
  ta.Poll();
  ASSERT_TRUE(to_b->Done());
  EXPECT_EQ(mooncake::ToErrorCode(to_b->status(0)), mooncake::ErrorCode::TRANSFER_FAIL)
      << to_b->status(0);
}

// Regression (defect 9): the slice size was not capped, but a work request's length is 32 bits;
// a slice of 4 GiB or more would have been posted with a truncated length.
TEST(RdmaOptionsTest, SliceSizeAboveTheLargestMessageIsRefused) {
  World world(12);
  const HostId a = world.AddHost("a", {"erdma_0"});
  mooncake::RdmaOptions o;
  o.devices = {"erdma_0"};
  o.slice_size = (uint64_t{4} << 30) + 4096;
  mooncake::RdmaTransport t(world.verbs(a), world.clock(), nullptr, "a", o);
  absl::Status s = t.Init();
  EXPECT_EQ(mooncake::ToErrorCode(s), mooncake::ErrorCode::INVALID_PARAMS) << s;
  EXPECT_NE(s.message().find("slice_size"), std::string::npos) << s;
}

}  // namespace
}  // namespace sim
