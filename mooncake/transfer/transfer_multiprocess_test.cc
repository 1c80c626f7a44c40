// The TransferEngine against storage peers in other processes (transfer_peer), over loopback.
#include <signal.h>
#include <string.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/transfer/peer_process.h"
#include "mooncake/transfer/transfer_engine.h"

namespace mooncake {
namespace {

using Op = TransferRequest::Opcode;

struct Peer {
  std::unique_ptr<PeerProcess> process;
  std::string name;
  uint64_t addr = 0;
  uint64_t size = 0;
};

Peer StartPeer(std::vector<std::string> args) {
  Peer p;
  auto proc =
      PeerProcess::Start(RunfilePath("mooncake/transfer/transfer_peer"), args, absl::Seconds(20));
  EXPECT_TRUE(proc.ok()) << proc.status();
  if (!proc.ok()) return p;
  p.process = std::move(*proc);
  const auto& f = p.process->ready();
  EXPECT_EQ(f.size(), 3u);
  p.name = f[0];
  EXPECT_TRUE(absl::SimpleAtoi(f[1], &p.addr));
  EXPECT_TRUE(absl::SimpleAtoi(f[2], &p.size));
  return p;
}

uint8_t Pattern(uint64_t i, int fill) { return static_cast<uint8_t>((i * 131 + fill) & 0xff); }

class MultiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TransferEngineOptions o;
    o.local_server_name = "127.0.0.1";
    o.transfer_timeout = absl::Seconds(5);
    auto e = TransferEngine::Create(o);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    local_.assign(64 << 20, 0);
    ASSERT_TRUE(engine_->RegisterLocalMemory(local_.data(), local_.size()).ok());
  }
  std::unique_ptr<TransferEngine> engine_;
  std::vector<uint8_t> local_;
};

TEST_F(MultiProcessTest, ReadsWhatAnotherProcessHoldsOverShmAndTcp) {
  Peer shm = StartPeer({"--size=16mb", "--fill=5", "--shm=true"});
  Peer tcp = StartPeer({"--size=16mb", "--fill=9", "--shm=false"});
  auto s1 = engine_->OpenSegment(shm.name);
  auto s2 = engine_->OpenSegment(tcp.name);
  ASSERT_TRUE(s1.ok() && s2.ok()) << s1.status() << s2.status();
  EXPECT_EQ(*engine_->RouteTo(*s1), RouteKind::kShm);
  EXPECT_EQ(*engine_->RouteTo(*s2), RouteKind::kTcp);
  uint8_t* a = local_.data();
  uint8_t* b = local_.data() + (16 << 20);
  auto st = engine_->Transfer(
      {{Op::kRead, a, *s1, shm.addr, shm.size}, {Op::kRead, b, *s2, tcp.addr, tcp.size}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  ASSERT_TRUE(st[1].ok()) << st[1];
  for (uint64_t i = 0; i < shm.size; ++i) ASSERT_EQ(a[i], Pattern(i, 5)) << i;
  for (uint64_t i = 0; i < tcp.size; ++i) ASSERT_EQ(b[i], Pattern(i, 9)) << i;
}

TEST_F(MultiProcessTest, WritesToTwoPeersThenReadsThemBack) {
  Peer p1 = StartPeer({"--size=16mb", "--shm=true"});
  Peer p2 = StartPeer({"--size=16mb", "--shm=false"});
  auto s1 = engine_->OpenSegment(p1.name);
  auto s2 = engine_->OpenSegment(p2.name);
  ASSERT_TRUE(s1.ok() && s2.ok());
  for (size_t i = 0; i < (32u << 20); ++i) local_[i] = static_cast<uint8_t>(i * 13 + 1);
  std::vector<TransferRequest> writes;
  for (uint64_t off = 0; off < (16u << 20); off += 256 << 10) {
    writes.push_back({Op::kWrite, local_.data() + off, *s1, p1.addr + off, 256 << 10});
    writes.push_back({Op::kWrite, local_.data() + (16 << 20) + off, *s2, p2.addr + off, 256 << 10});
  }
  for (const absl::Status& s : engine_->Transfer(writes)) ASSERT_TRUE(s.ok()) << s;
  // Read both back crosswise into the upper half and compare.
  uint8_t* back = local_.data() + (32 << 20);
  auto st = engine_->Transfer({{Op::kRead, back, *s2, p2.addr, 16 << 20},
                               {Op::kRead, back + (16 << 20), *s1, p1.addr, 16 << 20}});
  ASSERT_TRUE(st[0].ok() && st[1].ok()) << st[0] << st[1];
  EXPECT_EQ(memcmp(back, local_.data() + (16 << 20), 16 << 20), 0);
  EXPECT_EQ(memcmp(back + (16 << 20), local_.data(), 16 << 20), 0);
}

TEST_F(MultiProcessTest, PeerKilledMidBatchFailsOnlyItsRequestsAndComesBack) {
  Peer victim = StartPeer({"--size=48mb", "--shm=false"});
  Peer survivor = StartPeer({"--size=16mb", "--shm=false"});
  auto sv = engine_->OpenSegment(victim.name);
  auto ss = engine_->OpenSegment(survivor.name);
  ASSERT_TRUE(sv.ok() && ss.ok());
  std::vector<TransferRequest> reqs;
  for (int round = 0; round < 8; ++round) {
    for (uint64_t off = 0; off < victim.size; off += 1 << 20) {
      reqs.push_back({Op::kWrite, local_.data() + off, *sv, victim.addr + off, 1 << 20});
    }
  }
  const size_t victim_requests = reqs.size();
  for (uint64_t off = 0; off < survivor.size; off += 1 << 20) {
    reqs.push_back({Op::kWrite, local_.data() + off, *ss, survivor.addr + off, 1 << 20});
  }
  auto batch = engine_->Submit(reqs);
  victim.process->Kill(SIGKILL);
  ASSERT_TRUE(batch->Wait(absl::Seconds(20))) << "requests to a dead peer must complete";
  size_t failed = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    absl::Status s = batch->status(i);
    if (i >= victim_requests) {
      EXPECT_TRUE(s.ok()) << "survivor request " << i << ": " << s;
    } else if (!s.ok()) {
      EXPECT_EQ(ToErrorCode(s), ErrorCode::TRANSFER_FAIL) << s;
      ++failed;
    }
  }
  EXPECT_GT(failed, 0u) << "the kill landed after the whole batch; make the batch larger";
  // The survivor keeps working.
  auto st = engine_->Transfer({{Op::kRead, local_.data(), *ss, survivor.addr, 1 << 20}});
  EXPECT_TRUE(st[0].ok()) << st[0];
  // While the victim is down its requests fail fast with a clear error.
  st = engine_->Transfer({{Op::kWrite, local_.data(), *sv, victim.addr, 4096}});
  EXPECT_EQ(ToErrorCode(st[0]), ErrorCode::TRANSFER_FAIL) << st[0];
  // The victim restarts under the same name (same port): the engine reconnects and refreshes its
  // descriptor, so the new process's buffer is reachable through the same segment id.
  Peer reborn = StartPeer({"--host=" + victim.name, "--size=1mb", "--fill=3", "--shm=false"});
  ASSERT_EQ(reborn.name, victim.name);
  absl::Status last;
  for (int attempt = 0; attempt < 50; ++attempt) {
    last = engine_->Transfer({{Op::kRead, local_.data(), *sv, reborn.addr, reborn.size}})[0];
    if (last.ok()) break;
    usleep(100 * 1000);
  }
  ASSERT_TRUE(last.ok()) << last;
  for (uint64_t i = 0; i < reborn.size; ++i) ASSERT_EQ(local_[i], Pattern(i, 3));
}

TEST_F(MultiProcessTest, DeadSharedMemoryPeerIsReportedNotSilentlyWritten) {
  Peer p = StartPeer({"--size=4mb", "--shm=true"});
  auto seg = engine_->OpenSegment(p.name);
  ASSERT_TRUE(seg.ok());
  ASSERT_EQ(*engine_->RouteTo(*seg), RouteKind::kShm);
  ASSERT_TRUE(engine_->Transfer({{Op::kWrite, local_.data(), *seg, p.addr, 4096}})[0].ok());
  p.process->Kill(SIGKILL);
  absl::Status s = engine_->Transfer({{Op::kWrite, local_.data(), *seg, p.addr, 4096}})[0];
  EXPECT_EQ(ToErrorCode(s), ErrorCode::TRANSFER_FAIL) << s;
}

}  // namespace
}  // namespace mooncake
