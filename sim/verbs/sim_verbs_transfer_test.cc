// SimVerbs data path: RDMA WRITE and READ move the real bytes at the simulated time they arrive,
// completions come in posting order, the NIC's checks give the hardware's error completions, and
// faults give RETRY_EXC_ERR after the documented retry time, then flushes.
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "sim/verbs/sim_verbs.h"
#include "sim/verbs/verbs_test_util.h"
#include "sim/verbs/world.h"

namespace sim {
namespace {

using testing::RcEnd;

constexpr uint64_t kMiB = 1 << 20;
constexpr int kAllAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
// ACK timeout for timeout = 14: 4.096 us * 2^14.
constexpr SimTime kTimeout14 = SimTime{4096} << 14;

double Ns(uint64_t bytes, double bps) { return static_cast<double>(bytes) * 8e9 / bps; }

struct Buffer {
  std::vector<uint8_t> bytes;
  ibv_mr* mr = nullptr;
  uint8_t* data() { return bytes.data(); }
};

struct Timed {
  ibv_wc wc;
  SimTime at;
};

class TransferTest : public ::testing::Test {
 protected:
  TransferTest() : world_(7) {
    NicSpec nic;  // 200 Gbps, 1 us per link (2 us one way), 4096 MTU
    a_ = world_.AddHost("a", {"mlx5_0"}, nic);
    b_ = world_.AddHost("b", {"mlx5_0"}, nic);
    c_ = world_.AddHost("c", {"mlx5_0"}, nic);
    ea_ = testing::OpenEnd(world_.verbs(a_), "mlx5_0");
    eb_ = testing::OpenEnd(world_.verbs(b_), "mlx5_0");
  }

  void Connect(const testing::ConnectOptions& o = testing::ConnectOptions()) {
    ASSERT_TRUE(testing::Connect(ea_, eb_, o).ok());
  }

  // MakeBuffer allocates `size` bytes filled from `seed` (0 = zeros) and registers them.
  Buffer MakeBuffer(const RcEnd& end, size_t size, uint8_t seed, int access = kAllAccess) {
    Buffer b;
    b.bytes.resize(size);
    if (seed != 0) {
      for (size_t i = 0; i < size; ++i)
        b.bytes[i] = static_cast<uint8_t>(seed * 31 + i * 7 + i / 251);
    }
    auto mr = end.verbs->RegMr(end.pd, b.bytes.data(), size, access);
    EXPECT_TRUE(mr.ok()) << mr.status();
    b.mr = mr.ok() ? *mr : nullptr;
    return b;
  }

  int Post(ibv_wr_opcode op, Buffer& local, size_t local_off, Buffer& remote, size_t remote_off,
           uint32_t len, uint64_t id, bool signaled = true) {
    return testing::PostRdma(ea_, op, local.mr, local.data() + local_off, len, remote.mr,
                             remote.data() + remote_off, id, signaled);
  }

  // Wait polls a's CQ after every event until `n` completions, recording when each was seen.
  std::vector<Timed> Wait(size_t n, SimTime timeout = 10 * kSecond, const RcEnd* end = nullptr) {
    const RcEnd& e = end != nullptr ? *end : ea_;
    std::vector<Timed> out;
    world_.RunFor(
        [&] {
          ibv_wc wc[16];
          int k;
          while ((k = e.verbs->PollCq(e.cq, 16, wc)) > 0) {
            for (int i = 0; i < k; ++i) out.push_back(Timed{wc[i], world_.sim().Now()});
          }
          return out.size() >= n;
        },
        timeout);
    return out;
  }

  ibv_qp_state StateOf(const RcEnd& e) { return *e.verbs->QueryQpState(e.qp); }

  World world_;
  HostId a_, b_, c_;
  RcEnd ea_, eb_;
};

TEST_F(TransferTest, WriteLandsWhenThePacketsArriveNotBefore) {
  Connect();
  Buffer src = MakeBuffer(ea_, kMiB, 1), dst = MakeBuffer(eb_, kMiB, 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, kMiB, 42), 0);
  const std::vector<uint8_t> zeros(kMiB, 0);
  // The first 64 KiB burst needs its serialization (2.6 us) plus 2 us of path latency.
  world_.sim().RunUntil(4 * kMicrosecond);
  EXPECT_EQ(dst.bytes, zeros);
  // Halfway: a prefix has landed, the rest has not.
  world_.sim().RunUntil(25 * kMicrosecond);
  EXPECT_EQ(std::memcmp(dst.data(), src.data(), 256 << 10), 0);
  EXPECT_EQ(std::memcmp(dst.data() + kMiB - 4096, zeros.data(), 4096), 0);

  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[0].wc.wr_id, 42u);
  EXPECT_EQ(wcs[0].wc.opcode, IBV_WC_RDMA_WRITE);
  EXPECT_EQ(wcs[0].wc.qp_num, ea_.qp->qp_num);
  EXPECT_EQ(dst.bytes, src.bytes);
  // Completion: serialization of 1 MiB + the last packet + latency there + the ACK's latency back.
  const double expected = Ns(kMiB, 200e9) + Ns(4096, 200e9) + 4 * kMicrosecond;
  EXPECT_NEAR(static_cast<double>(wcs[0].at), expected, 50);
}

TEST_F(TransferTest, ReadLandsWhenTheResponseArrives) {
  Connect();
  Buffer local = MakeBuffer(ea_, kMiB, 0), remote = MakeBuffer(eb_, kMiB, 2);
  ASSERT_EQ(Post(IBV_WR_RDMA_READ, local, 0, remote, 0, kMiB, 7), 0);
  const std::vector<uint8_t> zeros(kMiB, 0);
  // Request (2 us) + first 64 KiB of response (2.6 us + 2 us): nothing before ~6.6 us.
  world_.sim().RunUntil(6 * kMicrosecond);
  EXPECT_EQ(local.bytes, zeros);
  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[0].wc.opcode, IBV_WC_RDMA_READ);
  EXPECT_EQ(wcs[0].wc.byte_len, kMiB);
  EXPECT_EQ(local.bytes, remote.bytes);
  const double expected = 2 * kMicrosecond + Ns(kMiB, 200e9) + Ns(4096, 200e9) + 2 * kMicrosecond;
  EXPECT_NEAR(static_cast<double>(wcs[0].at), expected, 100);
}

TEST_F(TransferTest, ScatterGatherWriteAndRead) {
  Connect();
  Buffer src = MakeBuffer(ea_, 3 * 100000, 3);
  Buffer remote = MakeBuffer(eb_, 200000, 0);
  Buffer back = MakeBuffer(ea_, 3 * 100000, 0);
  const uint32_t sizes[3] = {50000, 100000, 7};  // crosses burst and packet boundaries
  const size_t offsets[3] = {0, 100000, 250000};
  auto post = [&](ibv_wr_opcode op, Buffer& local, uint64_t id) {
    ibv_sge sge[3];
    for (int i = 0; i < 3; ++i) {
      sge[i] =
          ibv_sge{reinterpret_cast<uint64_t>(local.data() + offsets[i]), sizes[i], local.mr->lkey};
    }
    ibv_send_wr wr;
    std::memset(&wr, 0, sizeof(wr));
    wr.wr_id = id;
    wr.sg_list = sge;
    wr.num_sge = 3;
    wr.opcode = op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(remote.data());
    wr.wr.rdma.rkey = remote.mr->rkey;
    ibv_send_wr* bad = nullptr;
    return world_.verbs(a_)->PostSend(ea_.qp, &wr, &bad);
  };
  ASSERT_EQ(post(IBV_WR_RDMA_WRITE, src, 1), 0);
  ASSERT_EQ(post(IBV_WR_RDMA_READ, back, 2), 0);
  std::vector<Timed> wcs = Wait(2);
  ASSERT_EQ(wcs.size(), 2u);
  for (const Timed& t : wcs) EXPECT_EQ(t.wc.status, IBV_WC_SUCCESS);
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(std::memcmp(remote.data() + at, src.data() + offsets[i], sizes[i]), 0) << i;
    EXPECT_EQ(std::memcmp(back.data() + offsets[i], src.data() + offsets[i], sizes[i]), 0) << i;
    at += sizes[i];
  }
}

TEST_F(TransferTest, CompletionsComeInPostingOrder) {
  Connect();
  Buffer local = MakeBuffer(ea_, 8 * kMiB, 4), remote = MakeBuffer(eb_, 8 * kMiB, 5);
  // A big READ, then a small WRITE whose ACK returns long before the READ's data has landed.
  ASSERT_EQ(Post(IBV_WR_RDMA_READ, local, 0, remote, 0, 4 * kMiB, 1), 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, local, 4 * kMiB, remote, 4 * kMiB, 4096, 2), 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, local, 5 * kMiB, remote, 5 * kMiB, 4096, 3), 0);
  world_.sim().RunUntil(10 * kMicrosecond);
  // The WRITEs' bytes are there already...
  EXPECT_EQ(std::memcmp(remote.data() + 4 * kMiB, local.data() + 4 * kMiB, 4096), 0);
  // ...but nothing completes before the READ does.
  EXPECT_EQ(testing::PollAll(ea_).size(), 0u);
  std::vector<Timed> wcs = Wait(3);
  ASSERT_EQ(wcs.size(), 3u);
  EXPECT_EQ(wcs[0].wc.wr_id, 1u);
  EXPECT_EQ(wcs[1].wc.wr_id, 2u);
  EXPECT_EQ(wcs[2].wc.wr_id, 3u);
  EXPECT_EQ(wcs[0].at, wcs[2].at);
}

TEST_F(TransferTest, FencedRequestWaitsForEarlierReads) {
  Connect();
  Buffer local = MakeBuffer(ea_, 8 * kMiB, 1), remote = MakeBuffer(eb_, 8 * kMiB, 2);
  ASSERT_EQ(Post(IBV_WR_RDMA_READ, local, 0, remote, 0, 4 * kMiB, 1), 0);
  ibv_sge sge{reinterpret_cast<uint64_t>(local.data() + 4 * kMiB), 4096, local.mr->lkey};
  ibv_send_wr wr;
  std::memset(&wr, 0, sizeof(wr));
  wr.wr_id = 2;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED | IBV_SEND_FENCE;
  wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(remote.data() + 4 * kMiB);
  wr.wr.rdma.rkey = remote.mr->rkey;
  ibv_send_wr* bad = nullptr;
  ASSERT_EQ(world_.verbs(a_)->PostSend(ea_.qp, &wr, &bad), 0);
  const std::vector<uint8_t> before(remote.data() + 4 * kMiB, remote.data() + 4 * kMiB + 4096);
  // The READ takes ~170 us; without the fence the WRITE would land after ~5 us.
  world_.sim().RunUntil(100 * kMicrosecond);
  EXPECT_EQ(std::memcmp(remote.data() + 4 * kMiB, before.data(), 4096), 0);
  std::vector<Timed> wcs = Wait(2);
  ASSERT_EQ(wcs.size(), 2u);
  EXPECT_EQ(wcs[1].wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(std::memcmp(remote.data() + 4 * kMiB, local.data() + 4 * kMiB, 4096), 0);
}

TEST_F(TransferTest, UnsignaledSuccessHasNoCompletionButTheBytesLand) {
  Connect();
  Buffer src = MakeBuffer(ea_, 8192, 6), dst = MakeBuffer(eb_, 8192, 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, 4096, 1, /*signaled=*/false), 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 4096, dst, 4096, 4096, 2, /*signaled=*/true), 0);
  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.wr_id, 2u);
  EXPECT_EQ(dst.bytes, src.bytes);
  world_.sim().RunFor(kMillisecond);
  EXPECT_EQ(testing::PollAll(ea_).size(), 0u);
}

TEST_F(TransferTest, InlineDataIsTakenAtPostTime) {
  Connect();
  Buffer dst = MakeBuffer(eb_, 64, 0);
  char payload[32] = "inline payload";
  ibv_sge sge{reinterpret_cast<uint64_t>(payload), sizeof(payload), /*lkey=*/0};
  ibv_send_wr wr;
  std::memset(&wr, 0, sizeof(wr));
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED | IBV_SEND_INLINE;
  wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(dst.data());
  wr.wr.rdma.rkey = dst.mr->rkey;
  ibv_send_wr* bad = nullptr;
  ASSERT_EQ(world_.verbs(a_)->PostSend(ea_.qp, &wr, &bad), 0);
  std::strcpy(payload, "changed after post");
  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_SUCCESS);
  EXPECT_STREQ(reinterpret_cast<char*>(dst.data()), "inline payload");
}

// --- Remote access errors ---

struct AccessCase {
  const char* name;
  ibv_wr_opcode op;
  int remote_access;   // MR access flags on b
  unsigned qp_access;  // b's QP access flags
  bool bad_rkey;
  size_t remote_offset;  // where in b's 64 KiB MR the 4 KiB op starts
};

class RemoteAccessTest : public TransferTest, public ::testing::WithParamInterface<AccessCase> {};

TEST_P(RemoteAccessTest, GivesRemAccessErrThenFlushes) {
  const AccessCase& c = GetParam();
  // b's QP gets the case's access flags; a's QP (not a responder here) everything.
  ASSERT_TRUE(testing::ToInit(ea_.verbs, ea_.qp, kAllAccess).ok());
  ASSERT_TRUE(testing::ToInit(eb_.verbs, eb_.qp, c.qp_access).ok());
  testing::ConnectOptions o;
  ASSERT_TRUE(testing::ToRtr(ea_.verbs, ea_.qp, eb_.gid, eb_.qp->qp_num, o.psn_b, o).ok());
  ASSERT_TRUE(testing::ToRtr(eb_.verbs, eb_.qp, ea_.gid, ea_.qp->qp_num, o.psn_a, o).ok());
  ASSERT_TRUE(testing::ToRts(ea_.verbs, ea_.qp, o.psn_a, o).ok());
  ASSERT_TRUE(testing::ToRts(eb_.verbs, eb_.qp, o.psn_b, o).ok());

  Buffer local = MakeBuffer(ea_, 64 << 10, 8);
  Buffer remote = MakeBuffer(eb_, 64 << 10, 9, c.remote_access);
  const std::vector<uint8_t> remote_before = remote.bytes;
  const std::vector<uint8_t> local_before = local.bytes;
  ibv_mr fake = *remote.mr;
  if (c.bad_rkey) fake.rkey ^= 0x5000;
  ASSERT_EQ(testing::PostRdma(ea_, c.op, local.mr, local.data(), 4096, &fake,
                              remote.data() + c.remote_offset, 1),
            0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, local, 0, remote, 0, 64, 2, /*signaled=*/false), 0);
  std::vector<Timed> wcs = Wait(2);
  ASSERT_EQ(wcs.size(), 2u) << c.name;
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_REM_ACCESS_ERR) << c.name;
  EXPECT_EQ(wcs[0].wc.wr_id, 1u);
  EXPECT_EQ(wcs[1].wc.status, IBV_WC_WR_FLUSH_ERR) << c.name;  // unsignaled, still completes
  EXPECT_EQ(wcs[1].wc.wr_id, 2u);
  // A NAK comes back after one round trip, not after a timeout.
  EXPECT_LT(wcs[0].at, 20 * kMicrosecond);
  EXPECT_EQ(StateOf(ea_), IBV_QPS_ERR);
  EXPECT_EQ(ea_.qp->state, IBV_QPS_ERR);
  EXPECT_EQ(StateOf(eb_), IBV_QPS_ERR);  // the responder's access error moves it to ERROR too
  EXPECT_EQ(remote.bytes, remote_before) << c.name;
  EXPECT_EQ(local.bytes, local_before) << c.name;
  // Later posts are flushed as well.
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, local, 0, remote, 0, 64, 3), 0);
  std::vector<ibv_wc> more = testing::PollAll(ea_);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].status, IBV_WC_WR_FLUSH_ERR);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RemoteAccessTest,
    ::testing::Values(
        AccessCase{"write bad rkey", IBV_WR_RDMA_WRITE, kAllAccess, kAllAccess, true, 0},
        AccessCase{"read bad rkey", IBV_WR_RDMA_READ, kAllAccess, kAllAccess, true, 0},
        AccessCase{"write past the end", IBV_WR_RDMA_WRITE, kAllAccess, kAllAccess, false,
                   (64 << 10) - 100},
        AccessCase{"read past the end", IBV_WR_RDMA_READ, kAllAccess, kAllAccess, false,
                   (64 << 10) - 1},
        AccessCase{"write without REMOTE_WRITE", IBV_WR_RDMA_WRITE,
                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ, kAllAccess, false, 0},
        AccessCase{"read without REMOTE_READ", IBV_WR_RDMA_READ,
                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, kAllAccess, false, 0},
        AccessCase{"write to a QP without REMOTE_WRITE", IBV_WR_RDMA_WRITE, kAllAccess,
                   IBV_ACCESS_REMOTE_READ, false, 0},
        AccessCase{"read from a QP without REMOTE_READ", IBV_WR_RDMA_READ, kAllAccess,
                   IBV_ACCESS_REMOTE_WRITE, false, 0}),
    [](const ::testing::TestParamInfo<AccessCase>& info) {
      std::string name = info.param.name;
      for (char& ch : name) {
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

TEST_F(TransferTest, RkeyOfAnotherHostIsAnAccessError) {
  Connect();
  RcEnd ec = testing::OpenEnd(world_.verbs(c_), "mlx5_0");
  Buffer local = MakeBuffer(ea_, 4096, 1);
  Buffer on_c = MakeBuffer(ec, 4096, 0);  // valid MR, but on c, not b
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, local, 0, on_c, 0, 4096, 1), 0);
  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_REM_ACCESS_ERR);
}

TEST_F(TransferTest, LocalProtectionErrors) {
  Buffer local = MakeBuffer(ea_, 64 << 10, 1);
  Buffer readonly_local = MakeBuffer(ea_, 4096, 1, IBV_ACCESS_REMOTE_READ & 0);
  Buffer remote = MakeBuffer(eb_, 64 << 10, 0);
  struct Case {
    const char* name;
    ibv_wr_opcode op;
    uint32_t lkey;
    uint8_t* addr;
    uint32_t len;
  };
  const Case cases[] = {
      {"bad lkey", IBV_WR_RDMA_WRITE, local.mr->lkey ^ 0x3000, local.data(), 4096},
      {"rkey used as lkey", IBV_WR_RDMA_WRITE, local.mr->rkey, local.data(), 4096},
      {"outside the MR", IBV_WR_RDMA_WRITE, local.mr->lkey, local.data() + 62 * 1024, 4096},
      {"READ into an MR without LOCAL_WRITE", IBV_WR_RDMA_READ, readonly_local.mr->lkey,
       readonly_local.data(), 4096},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(testing::Connect(ea_, eb_).ok()) << c.name;
    const std::vector<uint8_t> remote_before = remote.bytes;
    ibv_sge sge{reinterpret_cast<uint64_t>(c.addr), c.len, c.lkey};
    ibv_send_wr wr;
    std::memset(&wr, 0, sizeof(wr));
    wr.wr_id = 1;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = c.op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(remote.data());
    wr.wr.rdma.rkey = remote.mr->rkey;
    ibv_send_wr* bad = nullptr;
    ASSERT_EQ(world_.verbs(a_)->PostSend(ea_.qp, &wr, &bad), 0) << c.name;
    ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, local, 0, remote, 0, 64, 2), 0);
    std::vector<Timed> wcs = Wait(2);
    ASSERT_EQ(wcs.size(), 2u) << c.name;
    EXPECT_EQ(wcs[0].wc.status, IBV_WC_LOC_PROT_ERR) << c.name;
    EXPECT_EQ(wcs[1].wc.status, IBV_WC_WR_FLUSH_ERR) << c.name;
    EXPECT_EQ(StateOf(ea_), IBV_QPS_ERR);
    EXPECT_EQ(StateOf(eb_), IBV_QPS_RTS) << "a local error does not affect the responder";
    EXPECT_EQ(remote.bytes, remote_before) << c.name;
    // Back to RESET for the next case.
    ibv_qp_attr reset;
    std::memset(&reset, 0, sizeof(reset));
    reset.qp_state = IBV_QPS_RESET;
    ASSERT_TRUE(ea_.verbs->ModifyQp(ea_.qp, &reset, IBV_QP_STATE).ok());
    ASSERT_TRUE(eb_.verbs->ModifyQp(eb_.qp, &reset, IBV_QP_STATE).ok());
  }
}

TEST_F(TransferTest, ModifyToErrorFlushesEverythingOutstanding) {
  Connect();
  Buffer src = MakeBuffer(ea_, 16 * kMiB, 1), dst = MakeBuffer(eb_, 16 * kMiB, 0);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, i * 4 * kMiB, dst, i * 4 * kMiB, 4 * kMiB, i), 0);
  }
  world_.sim().RunUntil(10 * kMicrosecond);
  ibv_qp_attr err;
  std::memset(&err, 0, sizeof(err));
  err.qp_state = IBV_QPS_ERR;
  ASSERT_TRUE(ea_.verbs->ModifyQp(ea_.qp, &err, IBV_QP_STATE).ok());
  std::vector<ibv_wc> wcs = testing::PollAll(ea_);
  ASSERT_EQ(wcs.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(wcs[i].wr_id, static_cast<uint64_t>(i));
    EXPECT_EQ(wcs[i].status, IBV_WC_WR_FLUSH_ERR);
  }
}

TEST_F(TransferTest, ResetAndReconnectRecoversAfterAnError) {
  Connect();
  Buffer src = MakeBuffer(ea_, 4096, 1), dst = MakeBuffer(eb_, 4096, 0);
  ibv_mr bad = *dst.mr;
  bad.rkey ^= 0x1000;
  ASSERT_EQ(
      testing::PostRdma(ea_, IBV_WR_RDMA_WRITE, src.mr, src.data(), 4096, &bad, dst.data(), 1), 0);
  ASSERT_EQ(Wait(1).at(0).wc.status, IBV_WC_REM_ACCESS_ERR);
  // Retrying on the same QP only flushes.
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, 4096, 2), 0);
  EXPECT_EQ(Wait(1).at(0).wc.status, IBV_WC_WR_FLUSH_ERR);
  // RESET both sides and a new handshake (new PSNs) make the QPs usable again.
  ibv_qp_attr reset;
  std::memset(&reset, 0, sizeof(reset));
  reset.qp_state = IBV_QPS_RESET;
  ASSERT_TRUE(ea_.verbs->ModifyQp(ea_.qp, &reset, IBV_QP_STATE).ok());
  ASSERT_TRUE(eb_.verbs->ModifyQp(eb_.qp, &reset, IBV_QP_STATE).ok());
  testing::ConnectOptions o;
  o.psn_a = 555;
  o.psn_b = 9999;
  Connect(o);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, 4096, 3), 0);
  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(dst.bytes, src.bytes);
}

// --- Faults ---

TEST_F(TransferTest, NicDownMidTransferGivesRetryExceededAfterTheRetryTimeThenFlushes) {
  Connect();  // timeout 14 (67 ms per try), retry_cnt 7
  Buffer src = MakeBuffer(ea_, 64 * kMiB, 1), dst = MakeBuffer(eb_, 64 * kMiB, 0);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, i * 16 * kMiB, dst, i * 16 * kMiB, 16 * kMiB, i), 0);
  }
  const NicId nic_b = world_.network().FindNic(b_, "mlx5_0");
  world_.network().ScheduleNicDown(nic_b, 300 * kMicrosecond);  // during the first 16 MiB
  std::vector<Timed> wcs = Wait(4);
  ASSERT_EQ(wcs.size(), 4u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_RETRY_EXC_ERR);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(wcs[i].wc.status, IBV_WC_WR_FLUSH_ERR) << i;
  // retry_cnt + 1 ACK timeouts after the last progress (just before the NIC went down).
  const double expected = 300 * kMicrosecond + 8.0 * kTimeout14;
  EXPECT_NEAR(static_cast<double>(wcs[0].at), expected, 0.01 * expected);
  EXPECT_EQ(StateOf(ea_), IBV_QPS_ERR);
  // What arrived before the fault is intact.
  EXPECT_EQ(std::memcmp(dst.data(), src.data(), 4 * kMiB), 0);
  EXPECT_GE(world_.verbs(a_)->stats().ack_timeouts, 8u);
}

TEST_F(TransferTest, NicBackBeforeTheRetriesRunOutCompletesTheTransfer) {
  Connect();
  Buffer src = MakeBuffer(ea_, 32 * kMiB, 1), dst = MakeBuffer(eb_, 32 * kMiB, 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, 16 * kMiB, 1), 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_READ, src, 16 * kMiB, dst, 0, 16 * kMiB, 2), 0);
  const NicId nic_a = world_.network().FindNic(a_, "mlx5_0");
  world_.network().ScheduleNicDown(nic_a, 200 * kMicrosecond);
  world_.network().ScheduleNicUp(nic_a, 150 * kMillisecond);  // after two timeouts
  std::vector<Timed> wcs = Wait(2);
  ASSERT_EQ(wcs.size(), 2u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[1].wc.status, IBV_WC_SUCCESS);
  EXPECT_GT(wcs[0].at, 3 * kTimeout14 - kMillisecond);  // resumed at the third try
  EXPECT_EQ(std::memcmp(dst.data(), src.data(), 16 * kMiB), 0);
  EXPECT_EQ(std::memcmp(src.data() + 16 * kMiB, dst.data(), 16 * kMiB), 0);
}

TEST_F(TransferTest, PeerHostCrashGivesRetryExceeded) {
  Connect();
  Buffer src = MakeBuffer(ea_, 16 * kMiB, 1), dst = MakeBuffer(eb_, 16 * kMiB, 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_READ, src, 0, dst, 0, 8 * kMiB, 1), 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 8 * kMiB, dst, 8 * kMiB, 8 * kMiB, 2), 0);
  world_.network().ScheduleHostCrash(b_, 100 * kMicrosecond);
  std::vector<Timed> wcs = Wait(2);
  ASSERT_EQ(wcs.size(), 2u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_RETRY_EXC_ERR);
  EXPECT_EQ(wcs[1].wc.status, IBV_WC_WR_FLUSH_ERR);
  EXPECT_NEAR(static_cast<double>(wcs[0].at), 100e3 + 8.0 * kTimeout14, 0.01 * 8 * kTimeout14);
  // The crashed host's verbs are gone with it.
  EXPECT_FALSE(world_.verbs(b_)->ListDevices().ok());
  ibv_wc wc;
  EXPECT_EQ(world_.verbs(b_)->PollCq(eb_.cq, 1, &wc), -1);
  // After a restart, the host opens its devices afresh.
  world_.network().RestartHost(b_);
  EXPECT_TRUE(world_.verbs(b_)->ListDevices().ok());
  EXPECT_FALSE(world_.verbs(b_)->QueryQpState(eb_.qp).ok());
  RcEnd fresh = testing::OpenEnd(world_.verbs(b_), "mlx5_0");
  EXPECT_EQ(*fresh.verbs->QueryQpState(fresh.qp), IBV_QPS_RESET);
}

TEST_F(TransferTest, DestroyedOrErroredPeerQpGivesRetryExceeded) {
  for (bool destroy : {true, false}) {
    RcEnd a = testing::OpenEnd(world_.verbs(a_), "mlx5_0");
    RcEnd b = testing::OpenEnd(world_.verbs(b_), "mlx5_0");
    ASSERT_TRUE(testing::Connect(a, b).ok());
    Buffer src = MakeBuffer(a, 4096, 1), dst = MakeBuffer(b, 4096, 0);
    if (destroy) {
      ASSERT_TRUE(b.verbs->DestroyQp(b.qp).ok());
    } else {
      ibv_qp_attr err;
      std::memset(&err, 0, sizeof(err));
      err.qp_state = IBV_QPS_ERR;
      ASSERT_TRUE(b.verbs->ModifyQp(b.qp, &err, IBV_QP_STATE).ok());
    }
    const SimTime start = world_.sim().Now();
    ASSERT_EQ(
        testing::PostRdma(a, IBV_WR_RDMA_WRITE, src.mr, src.data(), 4096, dst.mr, dst.data(), 1),
        0);
    std::vector<Timed> wcs = Wait(1, 10 * kSecond, &a);
    ASSERT_EQ(wcs.size(), 1u);
    EXPECT_EQ(wcs[0].wc.status, IBV_WC_RETRY_EXC_ERR) << destroy;
    EXPECT_NEAR(static_cast<double>(wcs[0].at - start), 8.0 * kTimeout14, 0.01 * 8 * kTimeout14);
  }
}

TEST_F(TransferTest, PsnMismatchEndsInRetryExceeded) {
  testing::ConnectOptions o;
  ASSERT_TRUE(testing::ToInit(ea_.verbs, ea_.qp, kAllAccess).ok());
  ASSERT_TRUE(testing::ToInit(eb_.verbs, eb_.qp, kAllAccess).ok());
  ASSERT_TRUE(testing::ToRtr(ea_.verbs, ea_.qp, eb_.gid, eb_.qp->qp_num, o.psn_b, o).ok());
  ASSERT_TRUE(testing::ToRtr(eb_.verbs, eb_.qp, ea_.gid, ea_.qp->qp_num, o.psn_a + 1, o).ok());
  ASSERT_TRUE(testing::ToRts(ea_.verbs, ea_.qp, o.psn_a, o).ok());
  ASSERT_TRUE(testing::ToRts(eb_.verbs, eb_.qp, o.psn_b, o).ok());
  Buffer src = MakeBuffer(ea_, 4096, 1), dst = MakeBuffer(eb_, 4096, 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, 4096, 1), 0);
  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_RETRY_EXC_ERR);
  EXPECT_EQ(dst.bytes, std::vector<uint8_t>(4096, 0));
}

TEST_F(TransferTest, LightLossAddsRetransmissionsButEveryByteArrives) {
  Connect();
  world_.network().SetLinkLoss(world_.network().FindNic(b_, "mlx5_0"), 1e-4);
  Buffer src = MakeBuffer(ea_, 64 * kMiB, 1), dst = MakeBuffer(eb_, 64 * kMiB, 0);
  Buffer back = MakeBuffer(ea_, 64 * kMiB, 0);
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, i * 2 * kMiB, dst, i * 2 * kMiB, 2 * kMiB, i), 0);
  }
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(Post(IBV_WR_RDMA_READ, back, i * 2 * kMiB, dst, i * 2 * kMiB, 2 * kMiB, 100 + i), 0);
  }
  std::vector<Timed> wcs = Wait(64);
  ASSERT_EQ(wcs.size(), 64u);
  for (const Timed& t : wcs) ASSERT_EQ(t.wc.status, IBV_WC_SUCCESS) << t.wc.wr_id;
  EXPECT_EQ(dst.bytes, src.bytes);
  EXPECT_EQ(back.bytes, src.bytes);
  EXPECT_GT(world_.verbs(a_)->stats().retransmissions, 0u);
  // Lost packets mid-stream are NAKed, so the cost is round trips, not ACK timeouts.
  const double ideal = Ns(128 * kMiB, 200e9);
  EXPECT_LT(static_cast<double>(wcs.back().at), 1.5 * ideal + 2.0 * kTimeout14);
}

TEST_F(TransferTest, PersistentLossEndsInRetryExceeded) {
  Connect();
  world_.network().SetLinkLoss(world_.network().FindNic(b_, "mlx5_0"), 1.0);
  Buffer src = MakeBuffer(ea_, 4096, 1), dst = MakeBuffer(eb_, 4096, 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, 4096, 1), 0);
  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_RETRY_EXC_ERR);
  EXPECT_NEAR(static_cast<double>(wcs[0].at), 8.0 * kTimeout14, 0.01 * 8 * kTimeout14);
}

TEST_F(TransferTest, RemoteMrDeregisteredMidTransferIsAnAccessError) {
  Connect();
  Buffer src = MakeBuffer(ea_, 8 * kMiB, 1), dst = MakeBuffer(eb_, 8 * kMiB, 0);
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, 8 * kMiB, 1), 0);
  world_.sim().RunUntil(100 * kMicrosecond);
  ASSERT_TRUE(eb_.verbs->DeregMr(dst.mr).ok());
  const std::vector<uint8_t> at_dereg = dst.bytes;
  std::vector<Timed> wcs = Wait(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wc.status, IBV_WC_REM_ACCESS_ERR);
  EXPECT_EQ(dst.bytes, at_dereg);  // nothing written after deregistration
}

TEST_F(TransferTest, ReadsInFlightAreCappedByMaxRdAtomic) {
  auto run = [&](uint8_t peer_max_dest) {
    World world(1);
    HostId a = world.AddHost("a", {"mlx5_0"}), b = world.AddHost("b", {"mlx5_0"});
    RcEnd ea = testing::OpenEnd(world.verbs(a), "mlx5_0");
    RcEnd eb = testing::OpenEnd(world.verbs(b), "mlx5_0");
    testing::ConnectOptions o;
    o.max_dest_rd_atomic = peer_max_dest;
    EXPECT_TRUE(testing::Connect(ea, eb, o).ok());
    std::vector<uint8_t> local(16 * 64), remote(16 * 64, 1);
    ibv_mr* lmr = *ea.verbs->RegMr(ea.pd, local.data(), local.size(), kAllAccess);
    ibv_mr* rmr = *eb.verbs->RegMr(eb.pd, remote.data(), remote.size(), kAllAccess);
    for (int i = 0; i < 16; ++i) {
      testing::PostRdma(ea, IBV_WR_RDMA_READ, lmr, local.data() + i * 64, 64, rmr,
                        remote.data() + i * 64, i);
    }
    std::vector<ibv_wc> wcs = testing::WaitForCompletions(world, ea, 16, kSecond);
    EXPECT_EQ(wcs.size(), 16u);
    EXPECT_EQ(local, remote);
    return world.sim().Now();
  };
  const SimTime sixteen = run(16), two = run(2);
  // 16 small READs: one round trip with 16 credits, eight round trips with 2.
  EXPECT_LT(sixteen, 6 * kMicrosecond);
  EXPECT_GT(two, 7 * sixteen);
}

TEST_F(TransferTest, CqOverrunBreaksTheCq) {
  testing::EndOptions small;
  small.cq_entries = 4;
  small.max_send_wr = 16;
  RcEnd a = testing::OpenEnd(world_.verbs(a_), "mlx5_0", small);
  RcEnd b = testing::OpenEnd(world_.verbs(b_), "mlx5_0");
  ASSERT_TRUE(testing::Connect(a, b).ok());
  Buffer src = MakeBuffer(a, 4096, 1), dst = MakeBuffer(b, 4096, 0);
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(
        testing::PostRdma(a, IBV_WR_RDMA_WRITE, src.mr, src.data(), 512, dst.mr, dst.data(), i), 0);
  }
  world_.sim().RunFor(kMillisecond);
  ibv_wc wc[8];
  EXPECT_EQ(a.verbs->PollCq(a.cq, 8, wc), -1);
  EXPECT_EQ(world_.verbs(a_)->stats().cq_overruns, 1u);
}

TEST_F(TransferTest, CompletionCallbackRunsOncePerBurstOfCompletions) {
  Connect();
  Buffer src = MakeBuffer(ea_, 4096, 1), dst = MakeBuffer(eb_, 4096, 0);
  int calls = 0;
  ASSERT_TRUE(world_.verbs(a_)->SetCompletionCallback(ea_.cq, [&] { ++calls; }).ok());
  ASSERT_EQ(Post(IBV_WR_RDMA_WRITE, src, 0, dst, 0, 4096, 1), 0);
  world_.sim().RunFor(kMillisecond);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(world_.verbs(a_)->CqDepth(ea_.cq), 1);
}

TEST_F(TransferTest, TwoSendersIntoOneReceiverShareItsBandwidth) {
  RcEnd a = testing::OpenEnd(world_.verbs(a_), "mlx5_0");
  RcEnd b = testing::OpenEnd(world_.verbs(b_), "mlx5_0");
  RcEnd c1 = testing::OpenEnd(world_.verbs(c_), "mlx5_0");
  ibv_qp* c2 = testing::CreateQp(c1);
  ASSERT_TRUE(testing::Connect(a, c1).ok());
  ASSERT_TRUE(testing::ConnectQps(b, b.qp, c1, c2).ok());
  Buffer sa = MakeBuffer(a, 32 * kMiB, 1), sb = MakeBuffer(b, 32 * kMiB, 2);
  Buffer dst = MakeBuffer(c1, 64 * kMiB, 0);
  ASSERT_EQ(
      testing::PostRdma(a, IBV_WR_RDMA_WRITE, sa.mr, sa.data(), 32 * kMiB, dst.mr, dst.data(), 1),
      0);
  ASSERT_EQ(testing::PostRdma(b, IBV_WR_RDMA_WRITE, sb.mr, sb.data(), 32 * kMiB, dst.mr,
                              dst.data() + 32 * kMiB, 2),
            0);
  std::vector<Timed> wa = Wait(1, kSecond, &a);
  std::vector<Timed> wb = Wait(1, kSecond, &b);
  ASSERT_EQ(wa.size(), 1u);
  ASSERT_EQ(wb.size(), 1u);
  const double both = Ns(64 * kMiB, 200e9);
  EXPECT_NEAR(static_cast<double>(wa[0].at), both, 0.02 * both);
  EXPECT_NEAR(static_cast<double>(wb[0].at), both, 0.02 * both);
  EXPECT_EQ(std::memcmp(dst.data(), sa.data(), 32 * kMiB), 0);
  EXPECT_EQ(std::memcmp(dst.data() + 32 * kMiB, sb.data(), 32 * kMiB), 0);
}

// --- Bandwidth and determinism ---

TEST(SimVerbsBandwidthTest, OneGibOver200GbpsTakesAbout43Ms) {
  WorldOptions options;
  options.verbs.copy_data = false;  // timing only: the 1 GiB buffers are never touched
  World world(options);
  HostId a = world.AddHost("a", {"mlx5_0"}), b = world.AddHost("b", {"mlx5_0"});
  RcEnd ea = testing::OpenEnd(world.verbs(a), "mlx5_0");
  RcEnd eb = testing::OpenEnd(world.verbs(b), "mlx5_0");
  ASSERT_TRUE(testing::Connect(ea, eb).ok());
  const size_t gib = 1ull << 30;
  void* src = mmap(nullptr, gib, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  void* dst = mmap(nullptr, gib, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(src, MAP_FAILED);
  ASSERT_NE(dst, MAP_FAILED);
  ibv_mr* smr = *ea.verbs->RegMr(ea.pd, src, gib, kAllAccess);
  ibv_mr* dmr = *eb.verbs->RegMr(eb.pd, dst, gib, kAllAccess);
  ASSERT_EQ(testing::PostRdma(ea, IBV_WR_RDMA_WRITE, smr, src, gib, dmr, dst, 1), 0);
  std::vector<ibv_wc> wcs = testing::WaitForCompletions(world, ea, 1, kSecond);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  const double ms = static_cast<double>(world.sim().Now()) / kMillisecond;
  EXPECT_NEAR(ms, 42.95, 0.2);  // 2^30 * 8 / 200e9 s, plus microseconds of latency
  munmap(src, gib);
  munmap(dst, gib);
}

struct Outcome {
  uint64_t hash;
  uint64_t events;
  SimTime end;
  bool operator==(const Outcome& o) const {
    return hash == o.hash && events == o.events && end == o.end;
  }
};

// A lossy, faulty workload whose result depends on the seed only through the simulator's rng.
Outcome LossyWorkload(uint64_t seed) {
  World world(seed);
  HostId a = world.AddHost("a", {"mlx5_0", "mlx5_1"}), b = world.AddHost("b", {"mlx5_0"});
  RcEnd ea = testing::OpenEnd(world.verbs(a), "mlx5_0");
  RcEnd eb = testing::OpenEnd(world.verbs(b), "mlx5_0");
  EXPECT_TRUE(testing::Connect(ea, eb).ok());
  for (NicId n = 0; n < world.network().num_nics(); ++n) world.network().SetLinkLoss(n, 2e-4);
  RandomFaultOptions f;
  f.count = 3;
  f.end = 5 * kMillisecond;
  f.max_duration = 2 * kMillisecond;
  f.weight_nic_down = 0;  // keep every transfer alive; loss, latency and rate only
  world.network().RandomFaults(f);
  std::vector<uint8_t> src(16 * kMiB, 3), dst(16 * kMiB, 0);
  ibv_mr* smr = *ea.verbs->RegMr(ea.pd, src.data(), src.size(), kAllAccess);
  ibv_mr* dmr = *eb.verbs->RegMr(eb.pd, dst.data(), dst.size(), kAllAccess);
  for (int i = 0; i < 16; ++i) {
    testing::PostRdma(ea, i % 2 ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE, smr, src.data() + i * kMiB,
                      kMiB, dmr, dst.data() + i * kMiB, i);
  }
  std::vector<ibv_wc> wcs = testing::WaitForCompletions(world, ea, 16, 10 * kSecond);
  EXPECT_EQ(wcs.size(), 16u);
  for (const ibv_wc& wc : wcs) EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  return Outcome{world.sim().trace_hash(), world.sim().events_executed(), world.sim().Now()};
}

TEST(SimVerbsDeterminismTest, SameSeedSameTraceDifferentSeedDifferentTrace) {
  const Outcome a = LossyWorkload(11), b = LossyWorkload(11), c = LossyWorkload(12);
  EXPECT_TRUE(a == b) << a.hash << " vs " << b.hash;
  EXPECT_NE(a.hash, c.hash);
}

}  // namespace
}  // namespace sim
