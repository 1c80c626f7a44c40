// The TransferEngine's RDMA route on real soft-RoCE: two qemu guests with two rails each
// (erdma_0 on 10.0.0.0/24, erdma_1 on 10.0.1.0/24; tools/roce_vm). Guest 0 runs a supervisor
// (--supervise) that starts, kills and restarts a storage peer (transfer_peer) on command; guest 1
// runs these tests against it.
//
//   bazel test //mooncake/transfer/rdma:rxe_engine_test
//
// Also, on any machine: the setup errors of the RDMA path (no such device, no RDMA at all).
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/transfer/rdma/ib_verbs.h"
#include "mooncake/transfer/transfer_engine.h"

namespace mooncake {
namespace {

using Op = TransferRequest::Opcode;
constexpr int kSupervisorPort = 7480;
constexpr int kPeerPort = 15000;
constexpr uint64_t kSegment = 64 << 20;

// ---------------------------------------------------------------------------------------------
// Guest 0: the supervisor and its storage peer.

int Supervise(const std::string& peer_binary) {
  int bound = 0;
  absl::StatusOr<int> listener = ListenTcp("0.0.0.0", kSupervisorPort, &bound);
  if (!listener.ok()) return 1;
  pid_t child = -1;
  int child_stdin = -1;
  FILE* child_out = nullptr;
  auto start = [&]() -> std::string {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return "ERR pipe";
    child = fork();
    if (child == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      const std::string host = absl::StrCat("--host=", getenv("ROCE_IP0"), ":", kPeerPort);
      execl(peer_binary.c_str(), peer_binary.c_str(), host.c_str(), "--protocol=rdma",
            "--devices=erdma_0,erdma_1", "--shm=false", "--size=64mb", "--fill=3",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    child_stdin = in[1];
    child_out = fdopen(out[0], "r");
    char line[512] = {0};
    if (fgets(line, sizeof(line), child_out) == nullptr) return "ERR peer did not start";
    return absl::StrCat("OK ", std::string(line, strcspn(line, "\n")));
  };
  auto kill_peer = [&] {
    if (child > 0) {
      kill(child, SIGKILL);
      waitpid(child, nullptr, 0);
      close(child_stdin);
      fclose(child_out);
      child = -1;
    }
  };
  std::string started = start();
  fprintf(stderr, "supervisor: %s\n", started.c_str());
  for (;;) {
    int fd = accept(*listener, nullptr, nullptr);
    if (fd < 0) break;
    std::string command;
    char c;
    while (recv(fd, &c, 1, 0) == 1 && c != '\n') command.push_back(c);
    std::string reply = "OK";
    if (command == "ADDR") {
      reply = started;
    } else if (command == "KILL") {
      kill_peer();
    } else if (command == "START") {
      kill_peer();
      started = start();
      reply = started;
    } else if (command == "EXIT") {
      SendAll(fd, "OK\n", 3).IgnoreError();
      close(fd);
      break;
    }
    reply += "\n";
    SendAll(fd, reply.data(), reply.size()).IgnoreError();
    close(fd);
  }
  kill_peer();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Guest 1: the tests.

std::string Supervisor(const std::string& command) {
  const char* peer = getenv("ROCE_PEER0_IP0");
  for (int attempt = 0; attempt < 300; ++attempt) {  // guest 0 may still be booting
    absl::StatusOr<int> fd = ConnectTcp(peer, kSupervisorPort, absl::Seconds(1));
    if (!fd.ok()) {
      absl::SleepFor(absl::Milliseconds(200));
      continue;
    }
    std::string line = command + "\n", reply;
    SendAll(*fd, line.data(), line.size()).IgnoreError();
    char c;
    while (recv(*fd, &c, 1, 0) == 1 && c != '\n') reply.push_back(c);
    close(*fd);
    return reply;
  }
  return "ERR supervisor unreachable";
}

// The peer's segment address, from "OK READY <name> <addr> <size>".
uint64_t PeerBuffer(const std::string& reply) {
  std::vector<std::string> w = absl::StrSplit(reply, ' ');
  uint64_t addr = 0;
  if (w.size() < 5 || !absl::SimpleAtoi(w[3], &addr)) ADD_FAILURE() << "peer: " << reply;
  return addr;
}

char PeerByte(uint64_t i) { return static_cast<char>((i * 131 + 3) & 0xff); }

uint64_t KernelCounter(const std::string& device, const std::string& name) {
  std::ifstream f("/sys/class/infiniband/" + device + "/ports/1/hw_counters/" + name);
  uint64_t v = 0;
  f >> v;
  return v;
}

bool InGuest() { return getenv("ROCE_GUEST") != nullptr; }

class RxeEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!InGuest()) GTEST_SKIP() << "runs in the soft-RoCE guests (bazel test rxe_engine_test)";
    addr_ = PeerBuffer(Supervisor("ADDR"));
    TransferEngineOptions o;
    o.local_server_name = absl::StrCat(getenv("ROCE_IP0"), ":", kPeerPort + 1);
    o.protocol = "rdma";
    o.rdma_devices = {"erdma_0", "erdma_1"};
    o.allow_shm = false;
    o.rdma.qp_timeout = 14;
    o.rdma.retry_cnt = 3;
    o.rdma.rail_pause = absl::Milliseconds(500);
    o.transfer_timeout = absl::Seconds(20);
    ASSERT_TRUE(o.ApplyEnv().ok());  // MC_GID_INDEX, MC_MTU from the test's command line
    auto e = TransferEngine::Create(o);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    local_.assign(kLocal, 0);
    ASSERT_TRUE(engine_->RegisterLocalMemory(local_.data(), local_.size(), "cpu:0", false).ok());
    peer_ = absl::StrCat(getenv("ROCE_PEER0_IP0"), ":", kPeerPort);
    auto seg = engine_->OpenSegment(peer_);
    ASSERT_TRUE(seg.ok()) << seg.status();
    seg_ = *seg;
    ASSERT_EQ(*engine_->RouteTo(seg_), RouteKind::kRdma);
  }
  std::vector<TransferRequest> Batch(Op op, uint64_t each, int n, uint64_t remote_off = 0) {
    std::vector<TransferRequest> r;
    for (int i = 0; i < n; ++i) {
      r.push_back({op, local_.data() + i * each, seg_, addr_ + remote_off + i * each, each});
    }
    return r;
  }
  uint64_t RailBytes(int rail) {
    for (const RdmaTransport::RailStats& s : engine_->rdma_transport()->Stats(peer_)) {
      if (s.local_nic == absl::StrCat("erdma_", rail)) return s.bytes;
    }
    return 0;
  }

  static constexpr uint64_t kLocal = 32 << 20;
  std::unique_ptr<TransferEngine> engine_;
  std::vector<char> local_;
  std::string peer_;
  SegmentId seg_ = 0;
  uint64_t addr_ = 0;
};

// Batched READs and WRITEs of 64 KiB to 4 MiB move the right bytes over both rails, and the
// kernel's own packet counters agree with what the transport says each rail carried.
TEST_F(RxeEngineTest, BatchedReadsAndWritesOverBothRails) {
  const uint64_t pkts0 = KernelCounter("erdma_0", "sent_pkts");
  const uint64_t pkts1 = KernelCounter("erdma_1", "sent_pkts");
  uint64_t moved = 0;
  for (uint64_t each :
       {uint64_t{64} << 10, uint64_t{256} << 10, uint64_t{1} << 20, uint64_t{4} << 20}) {
    const int n = static_cast<int>(std::min<uint64_t>(8, kLocal / each));
    // Read the peer's pattern, then write our own and read it back.
    for (const absl::Status& s : engine_->Transfer(Batch(Op::kRead, each, n))) {
      ASSERT_TRUE(s.ok()) << s;
    }
    for (uint64_t i = 0; i < n * each; ++i) ASSERT_EQ(local_[i], PeerByte(i)) << "byte " << i;
    for (uint64_t i = 0; i < n * each; ++i) local_[i] = static_cast<char>(i * 7 + each);
    for (const absl::Status& s : engine_->Transfer(Batch(Op::kWrite, each, n, 32 << 20))) {
      ASSERT_TRUE(s.ok()) << s;
    }
    std::vector<char> wrote(local_.begin(), local_.begin() + n * each);
    std::fill(local_.begin(), local_.begin() + n * each, 0);
    for (const absl::Status& s : engine_->Transfer(Batch(Op::kRead, each, n, 32 << 20))) {
      ASSERT_TRUE(s.ok()) << s;
    }
    ASSERT_EQ(memcmp(local_.data(), wrote.data(), wrote.size()), 0) << each << "-byte requests";
    moved += 3 * n * each;
  }
  const uint64_t r0 = RailBytes(0), r1 = RailBytes(1);
  EXPECT_GT(r0, moved / 4) << "rail 0 carried little";
  EXPECT_GT(r1, moved / 4) << "rail 1 carried little";
  EXPECT_EQ(r0 + r1, moved);
  // Requests (WRITE data, READ requests) leave as packets of at most the path MTU; READ data
  // comes back as the peer's packets. Our sent packets: at least the written bytes / MTU.
  const uint64_t sent0 = KernelCounter("erdma_0", "sent_pkts") - pkts0;
  const uint64_t sent1 = KernelCounter("erdma_1", "sent_pkts") - pkts1;
  const uint64_t rcvd0 = KernelCounter("erdma_0", "rcvd_pkts");
  const uint64_t rcvd1 = KernelCounter("erdma_1", "rcvd_pkts");
  printf(
      "rail bytes: erdma_0 %llu, erdma_1 %llu; kernel sent packets: %llu, %llu; received %llu, "
      "%llu\n",
      (unsigned long long)r0, (unsigned long long)r1, (unsigned long long)sent0,
      (unsigned long long)sent1, (unsigned long long)rcvd0, (unsigned long long)rcvd1);
  EXPECT_GT(sent0, 0u);
  EXPECT_GT(sent1, 0u);
  // WRITE data leaves in packets of at most the path MTU (MC_MTU when set): a third of what
  // moved was written, so at least that many bytes / MTU packets were sent.
  const char* mtu_env = getenv("MC_MTU");
  const uint64_t mtu = mtu_env != nullptr ? std::strtoull(mtu_env, nullptr, 10) : 1024;
  EXPECT_GE(sent0 + sent1, moved / 3 / mtu) << "packets larger than the " << mtu << "-byte MTU";
  // Everything that moved crossed some rail as packets of at most 4 KiB: the packets sent and
  // received together account for every byte.
  EXPECT_GE((sent0 + sent1 + rcvd0 + rcvd1) * 4096, moved);
}

// One rail's link goes down mid-batch: every request still completes with the right bytes, the
// rail is paused, and once the link is back it carries traffic again.
// SetRail1Link runs `ip link set` on the netdev under erdma_1 (tools/roce_vm names it).
void SetRail1Link(bool up) {
  const char* netdev = getenv("ROCE_NETDEV1");
  ASSERT_NE(netdev, nullptr) << "ROCE_NETDEV1 is not set: run under tools/roce_vm";
  const std::string cmd = absl::StrCat("ip link set ", netdev, up ? " up" : " down");
  ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
}

TEST_F(RxeEngineTest, RailLinkDownMidBatchFailsOverAndComesBack) {
  constexpr uint64_t kEach = 256 << 10;
  constexpr int kN = kLocal / kEach;  // 32 MiB: about a second at soft-RoCE speed under KVM
  for (uint64_t i = 0; i < kN * kEach; ++i) local_[i] = static_cast<char>(i * 11 + 5);
  std::vector<char> wrote(local_.begin(), local_.begin() + kN * kEach);
  const uint64_t rail1_before = RailBytes(1);
  std::shared_ptr<TransferBatch> batch = engine_->Submit(Batch(Op::kWrite, kEach, kN));
  // Down once erdma_1 has carried part of the batch, so the link fails under requests in flight.
  const absl::Time submitted = absl::Now();
  while (RailBytes(1) == rail1_before && absl::Now() - submitted < absl::Seconds(5)) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  const absl::Time down = absl::Now();
  ASSERT_NO_FATAL_FAILURE(SetRail1Link(false));
  ASSERT_TRUE(batch->Wait(absl::Seconds(60))) << "the batch hung after the link went down";
  std::printf("rail 1 down mid-batch: the batch finished %.0f ms later\n",
              absl::ToDoubleMilliseconds(absl::Now() - down));
  for (const absl::Status& s : batch->statuses()) ASSERT_TRUE(s.ok()) << s;
  auto rail1_failed = [&](std::string* rails) {
    bool failed = false;
    for (const RdmaTransport::RailStats& s : engine_->rdma_transport()->Stats(peer_)) {
      if (s.local_nic == "erdma_1") failed = s.paused || s.failures > 0;
      absl::StrAppend(rails, " ", s.local_nic, ": ", s.bytes, " bytes, ", s.slices, " slices, ",
                      s.failures, " failures", s.paused ? " (paused)" : "", ";");
    }
    return failed;
  };
  std::string rails;
  const bool failed_mid_batch = rail1_failed(&rails);
  std::printf("after the write batch:%s\n", rails.c_str());
  std::fill(local_.begin(), local_.begin() + kN * kEach, 0);
  for (const absl::Status& s : engine_->Transfer(Batch(Op::kRead, kEach, kN))) {
    ASSERT_TRUE(s.ok()) << s;
  }
  EXPECT_EQ(memcmp(local_.data(), wrote.data(), wrote.size()), 0);
  // If every slice on erdma_1 had landed before the link went, the read batch (all of it with the
  // link down) is the one that finds the rail broken and moves elsewhere.
  rails.clear();
  EXPECT_TRUE(rail1_failed(&rails)) << "erdma_1 was neither paused nor counted a failure:" << rails;
  std::printf("rail 1 failure seen %s\n",
              failed_mid_batch ? "during the write batch" : "only by the read batch after it");
  const absl::Time up = absl::Now();
  ASSERT_NO_FATAL_FAILURE(SetRail1Link(true));
  const uint64_t before = RailBytes(1);
  // The link, then the rail's pause: keep reading until erdma_1 carries bytes again.
  while (RailBytes(1) == before && absl::Now() - up < absl::Seconds(30)) {
    for (const absl::Status& s : engine_->Transfer(Batch(Op::kRead, kEach, 16))) {
      ASSERT_TRUE(s.ok()) << s;
    }
  }
  EXPECT_GT(RailBytes(1), before) << "erdma_1 did not carry traffic again";
  std::printf("rail 1 up: carrying traffic again %.0f ms later\n",
              absl::ToDoubleMilliseconds(absl::Now() - up));
}

// The peer is killed with -9 mid-batch: requests fail cleanly (no hang), and after it restarts
// under the same name the same requests succeed against the new process.
TEST_F(RxeEngineTest, PeerKilledMidBatchThenRestarted) {
  constexpr uint64_t kEach = 256 << 10;
  constexpr int kN = 64;
  std::shared_ptr<TransferBatch> batch = engine_->Submit(Batch(Op::kWrite, kEach, kN));
  absl::SleepFor(absl::Milliseconds(150));
  ASSERT_EQ(Supervisor("KILL"), "OK");
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(batch->Wait(absl::Seconds(60))) << "the batch hung after the peer died";
  int failed = 0;
  for (const absl::Status& s : batch->statuses()) {
    if (!s.ok()) {
      ++failed;
      EXPECT_TRUE(ToErrorCode(s) == ErrorCode::TRANSFER_FAIL ||
                  ToErrorCode(s) == ErrorCode::INVALID_REPLICA)
          << s;
    }
  }
  printf("peer killed: %d of %d requests failed, the batch ended %.2f s after the kill\n", failed,
         kN, absl::ToDoubleSeconds(absl::Now() - t0));
  EXPECT_GT(failed, 0) << "the kill came after the batch: nothing was tested";
  addr_ = PeerBuffer(Supervisor("START"));
  std::vector<absl::Status> st;
  for (int attempt = 0; attempt < 20; ++attempt) {  // the rails are paused a moment, then probed
    st = engine_->Transfer(Batch(Op::kRead, kEach, 4));
    if (st[0].ok() && st[3].ok()) break;
    absl::SleepFor(absl::Milliseconds(300));
  }
  for (const absl::Status& s : st) ASSERT_TRUE(s.ok()) << s;
  for (uint64_t i = 0; i < 4 * kEach; ++i) ASSERT_EQ(local_[i], PeerByte(i));
}

// Setup errors of the RDMA path, on any machine (the guests have erdma_0/erdma_1, this host
// none): a device that does not exist is named; no RDMA at all is said plainly, and the engine
// does not quietly use TCP instead.
TEST(RdmaSetupTest, MissingDevicesAreClearErrors) {
  TransferEngineOptions o;
  o.local_server_name = "127.0.0.1";
  o.protocol = "rdma";
  o.rdma_devices = {"erdma_9"};
  auto e = TransferEngine::Create(o);
  ASSERT_FALSE(e.ok()) << "an engine came up on a device that does not exist";
  EXPECT_NE(e.status().message().find("erdma_9"), std::string::npos) << e.status();
  IbVerbs verbs;
  auto devices = verbs.ListDevices();
  if (!devices.ok() || devices->empty()) {
    EXPECT_NE(e.status().message().find("no RDMA device on this host"), std::string::npos)
        << e.status();
  } else {
    EXPECT_NE(e.status().message().find("not found"), std::string::npos) << e.status();
  }
}

// MC_GID_INDEX, MC_IB_PORT and MC_MTU reach the transport; bad values are errors naming them.
TEST(RdmaSetupTest, EnvironmentOverridesAreCheckedAndApplied) {
  setenv("MC_GID_INDEX", "1", 1);
  setenv("MC_IB_PORT", "1", 1);
  setenv("MC_MTU", "512", 1);
  TransferEngineOptions o;
  ASSERT_TRUE(o.ApplyEnv().ok());
  EXPECT_EQ(o.rdma.gid_index, 1);
  EXPECT_EQ(o.rdma.port, 1);
  EXPECT_EQ(o.rdma.path_mtu, 512);
  for (const char* bad : {"MC_GID_INDEX=-1", "MC_IB_PORT=0", "MC_MTU=100"}) {
    std::string kv(bad);
    const std::string name = kv.substr(0, kv.find('='));
    setenv(name.c_str(), kv.substr(kv.find('=') + 1).c_str(), 1);
    TransferEngineOptions b;
    absl::Status s = b.ApplyEnv();
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find(name), std::string::npos) << s;
    setenv(name.c_str(), name == "MC_MTU" ? "512" : "1", 1);
  }
  unsetenv("MC_GID_INDEX");
  unsetenv("MC_IB_PORT");
  unsetenv("MC_MTU");
}

}  // namespace
}  // namespace mooncake

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]).rfind("--supervise=", 0) == 0) {
      return mooncake::Supervise(std::string(argv[i] + 12));
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  if (mooncake::InGuest() && getenv("ROCE_PEER0_IP0") != nullptr) mooncake::Supervisor("EXIT");
  return rc;
}
