// The verbs conformance suite: the RC behaviours of docs/verbs.md, checked the same way against
// SimVerbs (the simulator's model) and against IbVerbs on real soft-RoCE (rdma_rxe in two qemu
// guests, tools/roce_vm). The simulator is only worth what it matches: a behaviour in which the
// two differ fails here on one of them.
//
//   bazel test //sim/verbs:verbs_conformance_test        # SimVerbs, in process
//   bazel test //sim/verbs:verbs_conformance_rxe_test    # rxe: guest 0 serves the responder
//                                                         # (--responder), guest 1 runs the tests
#include <string.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "sim/verbs/verbs_lab.h"
#include "sim/verbs/verbs_test_util.h"

namespace sim {
namespace {

constexpr int kAll = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;

std::unique_ptr<VerbsLab> MakeLab() {
  const char* rxe = std::getenv("MC_CONFORMANCE_RESPONDER");  // host:port of the responder guest
  if (rxe == nullptr) return NewSimLab();
  std::string where(rxe);
  absl::StatusOr<std::unique_ptr<VerbsLab>> lab =
      NewRxeLab(where.substr(0, where.rfind(':')), std::atoi(where.c_str() + where.rfind(':') + 1));
  if (!lab.ok()) {
    ADD_FAILURE() << "cannot reach the responder at " << where << ": " << lab.status();
    return nullptr;
  }
  return std::move(*lab);
}

class ConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = MakeLab();
    ASSERT_NE(lab_, nullptr);
    verbs_ = lab_->verbs();
    end_ = testing::OpenEnd(verbs_, lab_->device(rail_));
    local_.assign(kBytes, 0);
    auto mr = verbs_->RegMr(end_.pd, local_.data(), local_.size(), kAll);
    ASSERT_TRUE(mr.ok()) << mr.status();
    mr_ = *mr;
    auto port = verbs_->QueryPort(end_.context, 1);
    ASSERT_TRUE(port.ok());
    mtu_ = port->active_mtu;
  }
  void TearDown() override {
    if (lab_ == nullptr) return;
    if (mr_ != nullptr) verbs_->DeregMr(mr_).IgnoreError();
  }

  // Connects a fresh requester QP with a fresh responder QP; returns the requester QP.
  ibv_qp* Connect(testing::ConnectOptions o = testing::ConnectOptions()) {
    absl::StatusOr<ibv_qp*> qp = TryConnect(o);
    EXPECT_TRUE(qp.ok()) << qp.status();
    return qp.ok() ? *qp : nullptr;
  }
  absl::StatusOr<ibv_qp*> TryConnect(testing::ConnectOptions o = testing::ConnectOptions()) {
    ibv_qp* qp = testing::CreateQp(end_);
    if (qp == nullptr) return absl::InternalError("cannot create a QP");
    o.mtu = mtu_;
    auto gid = verbs_->QueryGid(end_.context, 1, o.gid_index);
    if (!gid.ok()) return gid.status();
    QpRequest req{rail_, qp->qp_num, o.psn_a, *gid, mtu_, o.gid_index};
    auto remote = lab_->responder()->Connect(req);
    if (!remote.ok()) return remote.status();
    remote_qpn_ = remote->qpn;
    absl::Status s = testing::ToInit(verbs_, qp, kAll);
    if (s.ok()) s = testing::ToRtr(verbs_, qp, remote->gid, remote->qpn, remote->psn, o);
    if (s.ok()) s = testing::ToRts(verbs_, qp, o.psn_a, o);
    if (!s.ok()) {
      verbs_->DestroyQp(qp).IgnoreError();
      return s;
    }
    return qp;
  }
  RemoteMr Memory(uint64_t bytes = kBytes, int access = kAll) {
    auto mr = lab_->responder()->RegisterMemory(rail_, bytes, access);
    EXPECT_TRUE(mr.ok()) << mr.status();
    return mr.ok() ? *mr : RemoteMr();
  }
  int Post(ibv_qp* qp, ibv_wr_opcode op, uint64_t local_off, uint64_t remote_addr, uint32_t rkey,
           uint32_t length, uint64_t wr_id, uint32_t lkey = 0) {
    ibv_sge sge{reinterpret_cast<uint64_t>(local_.data() + local_off), length,
                lkey != 0 ? lkey : mr_->lkey};
    ibv_send_wr wr;
    memset(&wr, 0, sizeof(wr));
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = remote_addr;
    wr.wr.rdma.rkey = rkey;
    ibv_send_wr* bad = nullptr;
    return verbs_->PostSend(qp, &wr, &bad);
  }
  std::vector<ibv_wc> Wait(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    return lab_->WaitForCompletions(end_.cq, n, timeout);
  }
  ibv_qp_state State(ibv_qp* qp) { return *verbs_->QueryQpState(qp); }

  static constexpr uint64_t kBytes = 1 << 20;
  int rail_ = 0;  // the rail every QP of the test uses
  std::unique_ptr<VerbsLab> lab_;
  mooncake::Verbs* verbs_ = nullptr;
  testing::RcEnd end_;
  std::vector<char> local_;
  ibv_mr* mr_ = nullptr;
  ibv_mtu mtu_ = IBV_MTU_1024;
  uint32_t remote_qpn_ = 0;
};

// QP states: only legal transitions with the required attributes; a refused transition leaves
// the state alone; send requests are refused before RTS.
TEST_F(ConformanceTest, QpStateMachine) {
  ibv_qp* qp = testing::CreateQp(end_);
  EXPECT_EQ(State(qp), IBV_QPS_RESET);
  ibv_qp_attr a;
  memset(&a, 0, sizeof(a));
  a.qp_state = IBV_QPS_RTR;  // RESET -> RTR skips INIT
  EXPECT_EQ(verbs_->ModifyQp(qp, &a, IBV_QP_STATE).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(State(qp), IBV_QPS_RESET);
  a.qp_state = IBV_QPS_INIT;  // INIT without port, pkey and access flags
  EXPECT_FALSE(verbs_->ModifyQp(qp, &a, IBV_QP_STATE).ok());
  EXPECT_EQ(State(qp), IBV_QPS_RESET);
  ASSERT_TRUE(testing::ToInit(verbs_, qp, kAll).ok());
  EXPECT_EQ(State(qp), IBV_QPS_INIT);
  EXPECT_NE(Post(qp, IBV_WR_RDMA_WRITE, 0, 0x1000, 1, 8, 1), 0) << "posted in INIT";
  a.qp_state = IBV_QPS_RTS;  // INIT -> RTS skips RTR
  EXPECT_FALSE(verbs_->ModifyQp(qp, &a, IBV_QP_STATE).ok());
  EXPECT_EQ(State(qp), IBV_QPS_INIT);
  verbs_->DestroyQp(qp).IgnoreError();
  ibv_qp* up = Connect();
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(State(up), IBV_QPS_RTS);
}

// A WRITE and a READ larger than the path MTU move exactly the bytes asked, across hosts.
TEST_F(ConformanceTest, WriteAndReadMoveTheBytes) {
  ibv_qp* qp = Connect();
  ASSERT_NE(qp, nullptr);
  RemoteMr remote = Memory();
  for (size_t i = 0; i < 65536; ++i) local_[i] = static_cast<char>(i * 7);
  ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, remote.addr + 4096, remote.rkey, 65536, 1), 0);
  auto wc = Wait(1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, IBV_WC_SUCCESS) << testing::StatusName(wc[0].status);
  auto bytes = lab_->responder()->Read(remote.id, 4096, 65536);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(memcmp(bytes->data(), local_.data(), 65536), 0);
  auto before = lab_->responder()->Read(remote.id, 4000, 96);  // untouched below the range
  for (int i = 0; i < 96; ++i) EXPECT_EQ((*before)[i], ResponderByte(4000 + i));
  ASSERT_EQ(Post(qp, IBV_WR_RDMA_READ, 100000, remote.addr + 200000, remote.rkey, 30000, 2), 0);
  wc = Wait(1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, IBV_WC_SUCCESS) << testing::StatusName(wc[0].status);
  for (int i = 0; i < 30000; ++i) ASSERT_EQ(local_[100000 + i], ResponderByte(200000 + i));
}

// A wrong rkey, or a range past the remote MR, is a remote access error, and the QP goes to
// ERROR.
TEST_F(ConformanceTest, BadRkeyOrRangeIsARemoteAccessErrorAndBreaksTheQp) {
  RemoteMr remote = Memory(65536);
  for (int variant = 0; variant < 2; ++variant) {
    ibv_qp* qp = Connect();
    ASSERT_NE(qp, nullptr);
    const uint32_t rkey = variant == 0 ? remote.rkey ^ 0x5a5a00 : remote.rkey;
    const uint64_t addr = variant == 0 ? remote.addr : remote.addr + 65536 - 100;
    ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, addr, rkey, 4096, 10 + variant), 0);
    auto wc = Wait(1);
    ASSERT_EQ(wc.size(), 1u);
    EXPECT_EQ(wc[0].status, IBV_WC_REM_ACCESS_ERR)
        << "variant " << variant << ": " << testing::StatusName(wc[0].status);
    EXPECT_EQ(State(qp), IBV_QPS_ERR);
  }
  auto bytes = lab_->responder()->Read(remote.id, 65536 - 100, 100);
  for (int i = 0; i < 100; ++i) EXPECT_EQ((*bytes)[i], ResponderByte(65536 - 100 + i));
}

// After the first error, everything outstanding and everything posted later is flushed.
TEST_F(ConformanceTest, OutstandingAndLaterRequestsAreFlushed) {
  ibv_qp* qp = Connect();
  ASSERT_NE(qp, nullptr);
  RemoteMr remote = Memory();
  ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, remote.addr, remote.rkey ^ 0x777700, 4096, 1), 0);
  for (int i = 2; i <= 4; ++i) {
    ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, remote.addr, remote.rkey, 4096, i), 0);
  }
  auto wc = Wait(4);
  ASSERT_EQ(wc.size(), 4u);
  EXPECT_EQ(wc[0].wr_id, 1u);
  EXPECT_EQ(wc[0].status, IBV_WC_REM_ACCESS_ERR) << testing::StatusName(wc[0].status);
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(wc[i].status, IBV_WC_WR_FLUSH_ERR) << testing::StatusName(wc[i].status);
  }
  ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, remote.addr, remote.rkey, 4096, 9), 0)
      << "posting to a QP in ERROR is accepted (and flushed)";
  wc = Wait(1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, IBV_WC_WR_FLUSH_ERR) << testing::StatusName(wc[0].status);
}

// A local SGE with the wrong lkey is a local error completion and breaks the QP. Which status it
// carries differs: hardware NICs (and SimVerbs) report LOC_PROT_ERR, rxe LOC_QP_OP_ERR
// (docs/verbs.md, differences). The transport never posts an lkey it did not register, so it
// treats LOC_QP_OP_ERR as the rail failing (see LocalLinkDownTest) and retries elsewhere.
TEST_F(ConformanceTest, WrongLkeyIsALocalError) {
  ibv_qp* qp = Connect();
  ASSERT_NE(qp, nullptr);
  RemoteMr remote = Memory();
  ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, remote.addr, remote.rkey, 4096, 1, mr_->lkey ^ 0x4400),
            0);
  auto wc = Wait(1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_TRUE(wc[0].status == IBV_WC_LOC_PROT_ERR || wc[0].status == IBV_WC_LOC_QP_OP_ERR)
      << testing::StatusName(wc[0].status);
  EXPECT_EQ(State(qp), IBV_QPS_ERR);
}

// Tests on rail 1, whose link they take down: the lab's own control connection runs on rail 0.
class LocalLinkDownTest : public ConformanceTest {
 protected:
  void SetUp() override {
    rail_ = 1;
    ConformanceTest::SetUp();
  }
  void TearDown() override {
    if (lab_ != nullptr && link_down_) {
      absl::Status s = lab_->SetLinkUp(rail_, true);
      EXPECT_TRUE(s.ok()) << s;
    }
    ConformanceTest::TearDown();
  }
  bool link_down_ = false;
};

// The requester's own link goes down: the port says so, and the first request the QP tries to
// send fails at once with a local QP operation error (rxe finds no route to the peer); the rest
// are flushed and the QP is in ERROR. The simulator models this (SimVerbsOptions::LocalPortDown
// kFailAtSend) beside the hardware behaviour, lost packets ending in RETRY_EXC_ERR. Once the link
// is back, a new QP on the same port moves bytes again.
TEST_F(LocalLinkDownTest, RequestsFailLocallyAndTheQpBreaks) {
  ibv_qp* qp = Connect();
  ASSERT_NE(qp, nullptr);
  RemoteMr remote = Memory();
  absl::Status down = lab_->SetLinkUp(rail_, false);
  ASSERT_TRUE(down.ok()) << down;
  link_down_ = true;
  auto port = verbs_->QueryPort(end_.context, 1);
  ASSERT_TRUE(port.ok());
  EXPECT_NE(port->state, IBV_PORT_ACTIVE);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(
        Post(qp, IBV_WR_RDMA_WRITE, i * 4096, remote.addr + i * 4096, remote.rkey, 4096, i + 1), 0);
  }
  auto wc = Wait(3, absl::Seconds(30));
  ASSERT_EQ(wc.size(), 3u) << "requests on a down link did not complete";
  EXPECT_EQ(wc[0].wr_id, 1u);
  EXPECT_EQ(wc[0].status, IBV_WC_LOC_QP_OP_ERR) << testing::StatusName(wc[0].status);
  EXPECT_EQ(wc[1].status, IBV_WC_WR_FLUSH_ERR) << testing::StatusName(wc[1].status);
  EXPECT_EQ(wc[2].status, IBV_WC_WR_FLUSH_ERR) << testing::StatusName(wc[2].status);
  EXPECT_EQ(State(qp), IBV_QPS_ERR);

  absl::Status up = lab_->SetLinkUp(rail_, true);
  ASSERT_TRUE(up.ok()) << up;
  link_down_ = false;
  // Right after the link returns, rxe's neighbour lookup at RTR may still time out (as the
  // transport sees: it retries the rail's handshake). Retry for a while, as it does.
  const absl::Time up_at = absl::Now();
  absl::StatusOr<ibv_qp*> again = TryConnect();
  while (!again.ok() && absl::Now() - up_at < absl::Seconds(20)) {
    absl::SleepFor(absl::Milliseconds(200));
    again = TryConnect();
  }
  ASSERT_TRUE(again.ok()) << "no QP comes up on the port 20 s after its link returned: "
                          << again.status();
  std::printf("%s: a new QP connected %.0f ms after the link returned\n", lab_->name(),
              absl::ToDoubleMilliseconds(absl::Now() - up_at));
  for (int i = 0; i < 4096; ++i) local_[i] = static_cast<char>(i * 5 + 3);
  ASSERT_EQ(Post(*again, IBV_WR_RDMA_WRITE, 0, remote.addr, remote.rkey, 4096, 9), 0);
  wc = Wait(1, absl::Seconds(30));
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, IBV_WC_SUCCESS) << testing::StatusName(wc[0].status);
  auto back = lab_->responder()->Read(remote.id, 0, 4096);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, std::string(local_.data(), 4096));
}

// A peer whose QP is gone does not answer: retry-exceeded after the retries.
TEST_F(ConformanceTest, DeadPeerGivesRetryExceeded) {
  testing::ConnectOptions o;
  o.timeout = 12;  // ~17 ms per try
  o.retry_cnt = 2;
  ibv_qp* qp = Connect(o);
  ASSERT_NE(qp, nullptr);
  RemoteMr remote = Memory();
  ASSERT_TRUE(lab_->responder()->KillQp(remote_qpn_).ok());
  ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, remote.addr, remote.rkey, 4096, 1), 0);
  auto wc = Wait(1, absl::Seconds(30));
  ASSERT_EQ(wc.size(), 1u) << "no completion from a dead peer";
  EXPECT_EQ(wc[0].status, IBV_WC_RETRY_EXC_ERR) << testing::StatusName(wc[0].status);
  EXPECT_EQ(State(qp), IBV_QPS_ERR);
}

// A QP aimed at a GID that no host on the fabric has does not come up: bringing it to RTR
// resolves the GID's neighbour (RoCE), which times out. The state stays INIT.
TEST_F(ConformanceTest, GidNobodyHasCannotBeConnected) {
  ibv_qp* qp = testing::CreateQp(end_);
  testing::ConnectOptions o;
  o.mtu = mtu_;
  o.gid_index = 1;
  ibv_gid nowhere;
  memset(&nowhere, 0, sizeof(nowhere));
  nowhere.raw[10] = nowhere.raw[11] = 0xff;
  nowhere.raw[12] = 10;
  nowhere.raw[15] = 99;  // ::ffff:10.0.0.99: on rail 0's subnet, but no host has it
  ASSERT_TRUE(testing::ToInit(verbs_, qp, kAll).ok());
  absl::Status s = testing::ToRtr(verbs_, qp, nowhere, 4242, 1, o);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("timed out"), std::string::npos) << s;
  EXPECT_EQ(State(qp), IBV_QPS_INIT);
}

// Memory registration: the device's limit is reported; remote write without local write is
// refused; a registration may not exceed max_mr_size.
TEST_F(ConformanceTest, MemoryRegistrationLimits) {
  auto attr = verbs_->QueryDevice(end_.context);
  ASSERT_TRUE(attr.ok());
  EXPECT_GT(attr->max_mr_size, 0u);
  std::vector<char> buf(8192);
  EXPECT_FALSE(verbs_->RegMr(end_.pd, buf.data(), buf.size(), IBV_ACCESS_REMOTE_WRITE).ok())
      << "REMOTE_WRITE without LOCAL_WRITE was accepted";
  auto ro = verbs_->RegMr(end_.pd, buf.data(), buf.size(), IBV_ACCESS_REMOTE_READ);
  ASSERT_TRUE(ro.ok()) << ro.status();
  verbs_->DeregMr(*ro).IgnoreError();
  // A write into a remote MR registered without REMOTE_WRITE is an access error.
  ibv_qp* qp = Connect();
  ASSERT_NE(qp, nullptr);
  RemoteMr read_only = Memory(65536, IBV_ACCESS_REMOTE_READ);
  ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, read_only.addr, read_only.rkey, 4096, 1), 0);
  auto wc = Wait(1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, IBV_WC_REM_ACCESS_ERR) << testing::StatusName(wc[0].status);
  std::printf("%s: max_mr_size %llu, max_qp_wr %d, max_sge %d, max_qp_rd_atom %d\n", lab_->name(),
              static_cast<unsigned long long>(attr->max_mr_size), attr->max_qp_wr, attr->max_sge,
              attr->max_qp_rd_atom);
}

// RoCE v2 addressing: the GID table has the link-local GID at index 0 and the IPv4-mapped one
// at index 1 (what MC_GID_INDEX=1 selects); either carries traffic; unused entries read as
// zeros; an index past the table's length is refused.
TEST_F(ConformanceTest, GidTableAndGidSelection) {
  auto g0 = verbs_->QueryGid(end_.context, 1, 0);
  auto g1 = verbs_->QueryGid(end_.context, 1, 1);
  ASSERT_TRUE(g0.ok() && g1.ok()) << g0.status() << g1.status();
  EXPECT_EQ(g0->raw[0], 0xfe);
  EXPECT_EQ(g0->raw[1], 0x80);
  EXPECT_EQ(g1->raw[10], 0xff);  // ::ffff:a.b.c.d
  EXPECT_EQ(g1->raw[11], 0xff);
  auto port = verbs_->QueryPort(end_.context, 1);
  ASSERT_TRUE(port.ok());
  ASSERT_GT(port->gid_tbl_len, 2);
  auto empty = verbs_->QueryGid(end_.context, 1, port->gid_tbl_len - 1);
  ASSERT_TRUE(empty.ok()) << empty.status();
  ibv_gid zero;
  memset(&zero, 0, sizeof(zero));
  EXPECT_EQ(memcmp(empty->raw, zero.raw, 16), 0);
  EXPECT_FALSE(verbs_->QueryGid(end_.context, 1, port->gid_tbl_len).ok());
  testing::ConnectOptions o;
  o.gid_index = 1;
  ibv_qp* qp = Connect(o);
  ASSERT_NE(qp, nullptr);
  RemoteMr remote = Memory();
  ASSERT_EQ(Post(qp, IBV_WR_RDMA_WRITE, 0, remote.addr, remote.rkey, 8192, 1), 0);
  auto wc = Wait(1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, IBV_WC_SUCCESS) << testing::StatusName(wc[0].status);
}

// The port reports its active MTU; a connection at it carries messages many times larger.
TEST_F(ConformanceTest, ActiveMtu) {
  auto port = verbs_->QueryPort(end_.context, 1);
  ASSERT_TRUE(port.ok());
  EXPECT_GE(port->active_mtu, IBV_MTU_256);
  EXPECT_LE(port->active_mtu, port->max_mtu);
  EXPECT_EQ(port->state, IBV_PORT_ACTIVE);
  std::printf("%s: active_mtu %d, max_mtu %d, max_msg_sz %u, gid_tbl_len %d\n", lab_->name(),
              port->active_mtu, port->max_mtu, port->max_msg_sz, port->gid_tbl_len);
}

}  // namespace
}  // namespace sim

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]).rfind("--responder=", 0) == 0) {
      return sim::RunResponder(std::atoi(argv[i] + 12));
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  if (const char* rxe = std::getenv("MC_CONFORMANCE_RESPONDER")) {
    std::string where(rxe);
    sim::ShutdownResponder(where.substr(0, where.rfind(':')),
                           std::atoi(where.c_str() + where.rfind(':') + 1))
        .IgnoreError();
  }
  return rc;
}
