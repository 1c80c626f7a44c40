// SimVerbs control path: devices, ports, GIDs, PDs, MRs, CQs, the QP state machine with its
// attribute masks, posting rules and send-queue accounting.
#include <cerrno>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "sim/verbs/sim_verbs.h"
#include "sim/verbs/verbs_test_util.h"
#include "sim/verbs/world.h"

namespace sim {
namespace {

using testing::ConnectOptions;
using testing::RcEnd;

class SimVerbsControlTest : public ::testing::Test {
 protected:
  SimVerbsControlTest() : world_(1) {
    NicSpec nic;
    a_ = world_.AddHost("a", {"erdma_0", "erdma_1"}, nic);
    b_ = world_.AddHost("b", {"erdma_0"}, nic);
    va_ = world_.verbs(a_);
    vb_ = world_.verbs(b_);
  }
  World world_;
  HostId a_, b_;
  SimVerbs* va_;
  SimVerbs* vb_;
};

TEST_F(SimVerbsControlTest, DevicesAreTheHostsNics) {
  auto names = va_->ListDevices();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"erdma_0", "erdma_1"}));
  auto ctx = va_->OpenDevice("erdma_1");
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  ASSERT_NE((*ctx)->device, nullptr);
  EXPECT_STREQ((*ctx)->device->name, "erdma_1");
  EXPECT_EQ(va_->NicOf(*ctx), world_.network().FindNic(a_, "erdma_1"));
  auto missing = va_->OpenDevice("mlx5_9");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(va_->CloseDevice(*ctx).ok());
  EXPECT_FALSE(va_->CloseDevice(*ctx).ok());  // already closed
}

TEST_F(SimVerbsControlTest, QueryDevicePortAndGid) {
  ibv_context* ctx = *va_->OpenDevice("erdma_0");
  auto dev = va_->QueryDevice(ctx);
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ(dev->max_mr_size, 64ull << 30);
  EXPECT_EQ(dev->max_qp_rd_atom, 16);
  EXPECT_EQ(dev->phys_port_cnt, 1);
  EXPECT_GT(dev->max_qp_wr, 0);
  EXPECT_GT(dev->max_cqe, 0);

  auto port = va_->QueryPort(ctx, 1);
  ASSERT_TRUE(port.ok());
  EXPECT_EQ(port->state, IBV_PORT_ACTIVE);
  EXPECT_EQ(port->active_mtu, IBV_MTU_4096);
  EXPECT_EQ(port->link_layer, IBV_LINK_LAYER_ETHERNET);
  EXPECT_FALSE(va_->QueryPort(ctx, 2).ok());

  // The port follows the NIC.
  const NicId nic = world_.network().FindNic(a_, "erdma_0");
  world_.network().SetNicUp(nic, false);
  EXPECT_EQ(va_->QueryPort(ctx, 1)->state, IBV_PORT_DOWN);
  world_.network().SetNicUp(nic, true);
  EXPECT_EQ(va_->QueryPort(ctx, 1)->state, IBV_PORT_ACTIVE);

  // GIDs: fe80::<n> at index 0 and ::ffff:10.<n> at index 1, unique across hosts; the rest of the
  // table reads as zeros; past its length, EINVAL (as on rxe).
  ibv_context* ctx1 = *va_->OpenDevice("erdma_1");
  ibv_context* ctxb = *vb_->OpenDevice("erdma_0");
  ibv_gid g0 = *va_->QueryGid(ctx, 1, 0), g1 = *va_->QueryGid(ctx1, 1, 0);
  ibv_gid gb = *vb_->QueryGid(ctxb, 1, 0);
  EXPECT_EQ(g0.raw[0], 0xfe);
  EXPECT_EQ(g0.raw[1], 0x80);
  EXPECT_NE(std::memcmp(g0.raw, g1.raw, 16), 0);
  EXPECT_NE(std::memcmp(g0.raw, gb.raw, 16), 0);
  ibv_gid v4 = *va_->QueryGid(ctx, 1, 1);
  EXPECT_EQ(v4.raw[10], 0xff);
  EXPECT_EQ(v4.raw[12], 10);
  const int length = va_->QueryPort(ctx, 1)->gid_tbl_len;
  EXPECT_EQ(va_->QueryGid(ctx, 1, length - 1)->raw[0], 0);
  EXPECT_EQ(va_->QueryGid(ctx, 1, length).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SimVerbsControlTest, MemoryRegistrationChecksSizeAccessAndGivesUniqueKeys) {
  ibv_context* ctx = *va_->OpenDevice("erdma_0");
  ibv_pd* pd = *va_->AllocPd(ctx);
  std::vector<char> buf(1 << 16);
  auto mr = va_->RegMr(pd, buf.data(), buf.size(),
                       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
  ASSERT_TRUE(mr.ok()) << mr.status();
  EXPECT_EQ((*mr)->addr, buf.data());
  EXPECT_EQ((*mr)->length, buf.size());
  EXPECT_EQ((*mr)->pd, pd);
  EXPECT_NE((*mr)->lkey, (*mr)->rkey);
  auto mr2 = va_->RegMr(pd, buf.data(), 4096, IBV_ACCESS_LOCAL_WRITE);
  ASSERT_TRUE(mr2.ok());
  EXPECT_NE((*mr2)->lkey, (*mr)->lkey);
  EXPECT_NE((*mr2)->rkey, (*mr)->rkey);

  // Larger than max_mr_size (64 GiB by default): EINVAL, nothing registered. The address is
  // never touched.
  auto huge = va_->RegMr(pd, buf.data(), (64ull << 30) + 1, IBV_ACCESS_LOCAL_WRITE);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(huge.status().message().find("max_mr_size"), std::string::npos);
  EXPECT_TRUE(va_->RegMr(pd, buf.data(), 64ull << 30, IBV_ACCESS_LOCAL_WRITE).ok());

  // REMOTE_WRITE needs LOCAL_WRITE; zero length and null address are invalid.
  EXPECT_FALSE(va_->RegMr(pd, buf.data(), 4096, IBV_ACCESS_REMOTE_WRITE).ok());
  EXPECT_FALSE(va_->RegMr(pd, buf.data(), 0, IBV_ACCESS_LOCAL_WRITE).ok());
  EXPECT_FALSE(va_->RegMr(pd, nullptr, 4096, IBV_ACCESS_LOCAL_WRITE).ok());

  // A PD with MRs cannot be freed; a deregistered MR cannot be deregistered again.
  EXPECT_EQ(va_->DeallocPd(pd).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(va_->DeregMr(*mr).ok());
  EXPECT_FALSE(va_->DeregMr(*mr).ok());
}

TEST(SimVerbsLimitsTest, MaxMrSizeIsPerNic) {
  World world(1);
  NicSpec small;
  small.device.max_mr_size = 1 << 20;
  HostId h = world.AddHost("h", {"mlx5_0"}, small);
  SimVerbs* v = world.verbs(h);
  ibv_context* ctx = *v->OpenDevice("mlx5_0");
  EXPECT_EQ(v->QueryDevice(ctx)->max_mr_size, 1u << 20);
  ibv_pd* pd = *v->AllocPd(ctx);
  std::vector<char> buf(2 << 20);
  EXPECT_TRUE(v->RegMr(pd, buf.data(), 1 << 20, IBV_ACCESS_LOCAL_WRITE).ok());
  EXPECT_EQ(v->RegMr(pd, buf.data(), (1 << 20) + 1, IBV_ACCESS_LOCAL_WRITE).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SimVerbsControlTest, CompletionQueueLimits) {
  ibv_context* ctx = *va_->OpenDevice("erdma_0");
  EXPECT_FALSE(va_->CreateCq(ctx, 0).ok());
  EXPECT_FALSE(va_->CreateCq(ctx, (1 << 22) + 1).ok());
  auto cq = va_->CreateCq(ctx, 128);
  ASSERT_TRUE(cq.ok());
  EXPECT_EQ((*cq)->cqe, 128);
  ibv_wc wc[4];
  EXPECT_EQ(va_->PollCq(*cq, 4, wc), 0);
  EXPECT_EQ(va_->CloseDevice(ctx).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(va_->DestroyCq(*cq).ok());
  EXPECT_TRUE(va_->CloseDevice(ctx).ok());
}

TEST_F(SimVerbsControlTest, CreateQpFillsTheStructAndChecksAttributes) {
  RcEnd e = testing::OpenEnd(va_, "erdma_0");
  EXPECT_EQ(e.qp->state, IBV_QPS_RESET);
  EXPECT_EQ(e.qp->qp_type, IBV_QPT_RC);
  EXPECT_EQ(e.qp->send_cq, e.cq);
  EXPECT_EQ(e.qp->pd, e.pd);
  EXPECT_NE(e.qp->qp_num, 0u);
  ibv_qp* other = testing::CreateQp(e);
  EXPECT_NE(other->qp_num, e.qp->qp_num);

  ibv_qp_init_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.send_cq = e.cq;
  attr.recv_cq = e.cq;
  attr.qp_type = IBV_QPT_UD;
  attr.cap.max_send_wr = 1;
  EXPECT_FALSE(va_->CreateQp(e.pd, &attr).ok());  // only RC
  attr.qp_type = IBV_QPT_RC;
  attr.cap.max_send_wr = 1 << 20;
  EXPECT_FALSE(va_->CreateQp(e.pd, &attr).ok());  // above max_qp_wr
  attr.cap.max_send_wr = 16;
  attr.send_cq = nullptr;
  EXPECT_FALSE(va_->CreateQp(e.pd, &attr).ok());
  // A CQ that is in use cannot be destroyed.
  EXPECT_EQ(va_->DestroyCq(e.cq).code(), absl::StatusCode::kFailedPrecondition);
}

// --- QP state machine ---

class QpStateTest : public SimVerbsControlTest {
 protected:
  QpStateTest() {
    ea_ = testing::OpenEnd(va_, "erdma_0");
    eb_ = testing::OpenEnd(vb_, "erdma_0");
  }
  ibv_qp_state State() { return *va_->QueryQpState(ea_.qp); }
  absl::Status Modify(ibv_qp_attr attr, int mask) { return va_->ModifyQp(ea_.qp, &attr, mask); }
  static ibv_qp_attr Attr(ibv_qp_state s) {
    ibv_qp_attr a;
    std::memset(&a, 0, sizeof(a));
    a.qp_state = s;
    return a;
  }
  ibv_qp_attr InitAttr() {
    ibv_qp_attr a = Attr(IBV_QPS_INIT);
    a.port_num = 1;
    a.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
    return a;
  }
  ibv_qp_attr RtrAttr() {
    ibv_qp_attr a = Attr(IBV_QPS_RTR);
    a.path_mtu = IBV_MTU_4096;
    a.dest_qp_num = eb_.qp->qp_num;
    a.rq_psn = 1;
    a.max_dest_rd_atomic = 16;
    a.min_rnr_timer = 12;
    a.ah_attr.is_global = 1;
    a.ah_attr.grh.dgid = eb_.gid;
    a.ah_attr.port_num = 1;
    return a;
  }
  ibv_qp_attr RtsAttr() {
    ibv_qp_attr a = Attr(IBV_QPS_RTS);
    a.timeout = 14;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.sq_psn = 1;
    a.max_rd_atomic = 16;
    return a;
  }
  static constexpr int kInitMask =
      IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
  static constexpr int kRtrMask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
  static constexpr int kRtsMask = IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                  IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC;

  // GoTo brings the QP (from RESET) to `target` along the legal path.
  void GoTo(ibv_qp_state target) {
    ASSERT_TRUE(Modify(Attr(IBV_QPS_RESET), IBV_QP_STATE).ok());
    if (target == IBV_QPS_RESET) return;
    if (target == IBV_QPS_ERR) {
      ASSERT_TRUE(Modify(Attr(IBV_QPS_ERR), IBV_QP_STATE).ok());
      return;
    }
    ASSERT_TRUE(Modify(InitAttr(), kInitMask).ok());
    if (target == IBV_QPS_INIT) return;
    ASSERT_TRUE(Modify(RtrAttr(), kRtrMask).ok());
    if (target == IBV_QPS_RTR) return;
    ASSERT_TRUE(Modify(RtsAttr(), kRtsMask).ok());
  }
  // ExpectRejected checks that the change fails with EINVAL and leaves the state as it was.
  void ExpectRejected(ibv_qp_attr attr, int mask, const char* why) {
    const ibv_qp_state before = State();
    absl::Status s = Modify(attr, mask);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << why << ": " << s;
    EXPECT_EQ(State(), before) << why;
    EXPECT_EQ(ea_.qp->state, before) << why;
  }

  RcEnd ea_, eb_;
};

TEST_F(QpStateTest, EveryLegalTransitionSucceeds) {
  EXPECT_EQ(State(), IBV_QPS_RESET);
  EXPECT_TRUE(Modify(Attr(IBV_QPS_RESET), IBV_QP_STATE).ok());  // RESET -> RESET
  EXPECT_TRUE(Modify(InitAttr(), kInitMask).ok());
  EXPECT_EQ(State(), IBV_QPS_INIT);
  EXPECT_TRUE(Modify(InitAttr(), kInitMask).ok());  // INIT -> INIT
  ibv_qp_attr just_access = Attr(IBV_QPS_INIT);
  just_access.qp_access_flags = IBV_ACCESS_REMOTE_READ;
  EXPECT_TRUE(Modify(just_access, IBV_QP_ACCESS_FLAGS).ok());  // no STATE: stays in INIT
  EXPECT_EQ(State(), IBV_QPS_INIT);
  EXPECT_TRUE(Modify(RtrAttr(), kRtrMask).ok());
  EXPECT_EQ(State(), IBV_QPS_RTR);
  EXPECT_TRUE(Modify(RtsAttr(), kRtsMask).ok());
  EXPECT_EQ(State(), IBV_QPS_RTS);
  ibv_qp_attr rts_again = Attr(IBV_QPS_RTS);
  rts_again.min_rnr_timer = 5;
  rts_again.cur_qp_state = IBV_QPS_RTS;
  EXPECT_TRUE(
      Modify(rts_again, IBV_QP_STATE | IBV_QP_MIN_RNR_TIMER | IBV_QP_CUR_STATE).ok());  // RTS->RTS
  EXPECT_TRUE(Modify(Attr(IBV_QPS_ERR), IBV_QP_STATE).ok());
  EXPECT_EQ(State(), IBV_QPS_ERR);
  EXPECT_EQ(ea_.qp->state, IBV_QPS_ERR);
  EXPECT_TRUE(Modify(Attr(IBV_QPS_ERR), IBV_QP_STATE).ok());  // ERR -> ERR
  EXPECT_TRUE(Modify(Attr(IBV_QPS_RESET), IBV_QP_STATE).ok());
  EXPECT_EQ(State(), IBV_QPS_RESET);

  // Any state can go to RESET or ERR.
  for (ibv_qp_state from : {IBV_QPS_RESET, IBV_QPS_INIT, IBV_QPS_RTR, IBV_QPS_RTS, IBV_QPS_ERR}) {
    for (ibv_qp_state to : {IBV_QPS_RESET, IBV_QPS_ERR}) {
      GoTo(from);
      ASSERT_EQ(State(), from);
      EXPECT_TRUE(Modify(Attr(to), IBV_QP_STATE).ok()) << from << " -> " << to;
      EXPECT_EQ(State(), to);
    }
  }
}

TEST_F(QpStateTest, IllegalTransitionsFailAndLeaveTheStateUnchanged) {
  struct Case {
    ibv_qp_state from, to;
  };
  const Case cases[] = {
      {IBV_QPS_RESET, IBV_QPS_RTR}, {IBV_QPS_RESET, IBV_QPS_RTS}, {IBV_QPS_INIT, IBV_QPS_RTS},
      {IBV_QPS_RTR, IBV_QPS_INIT},  {IBV_QPS_RTR, IBV_QPS_RTR},   {IBV_QPS_RTS, IBV_QPS_INIT},
      {IBV_QPS_RTS, IBV_QPS_RTR},   {IBV_QPS_ERR, IBV_QPS_INIT},  {IBV_QPS_ERR, IBV_QPS_RTR},
      {IBV_QPS_ERR, IBV_QPS_RTS},   {IBV_QPS_RTS, IBV_QPS_SQD},
  };
  for (const Case& c : cases) {
    GoTo(c.from);
    // Give every attribute the target would need, so only the transition itself is wrong.
    ibv_qp_attr attr = c.to == IBV_QPS_RTR   ? RtrAttr()
                       : c.to == IBV_QPS_RTS ? RtsAttr()
                                             : InitAttr();
    attr.qp_state = c.to;
    const int mask = c.to == IBV_QPS_RTR ? kRtrMask : c.to == IBV_QPS_RTS ? kRtsMask : kInitMask;
    ExpectRejected(attr, c.to == IBV_QPS_SQD ? IBV_QP_STATE : mask, "illegal transition");
  }
}

TEST_F(QpStateTest, MissingOrExtraAttributesFail) {
  // RESET -> INIT without the port.
  ExpectRejected(InitAttr(), kInitMask & ~IBV_QP_PORT, "INIT without PORT");
  // RESET -> INIT with an RTR attribute.
  ExpectRejected(InitAttr(), kInitMask | IBV_QP_DEST_QPN, "INIT with DEST_QPN");
  GoTo(IBV_QPS_INIT);
  // INIT -> RTR without each required attribute in turn.
  for (int bit : {IBV_QP_AV, IBV_QP_PATH_MTU, IBV_QP_DEST_QPN, IBV_QP_RQ_PSN,
                  IBV_QP_MAX_DEST_RD_ATOMIC, IBV_QP_MIN_RNR_TIMER}) {
    ExpectRejected(RtrAttr(), kRtrMask & ~bit, "RTR without a required attribute");
  }
  ExpectRejected(RtrAttr(), kRtrMask | IBV_QP_SQ_PSN, "RTR with SQ_PSN");
  ASSERT_TRUE(Modify(RtrAttr(), kRtrMask).ok());
  for (int bit : {IBV_QP_TIMEOUT, IBV_QP_RETRY_CNT, IBV_QP_RNR_RETRY, IBV_QP_SQ_PSN,
                  IBV_QP_MAX_QP_RD_ATOMIC}) {
    ExpectRejected(RtsAttr(), kRtsMask & ~bit, "RTS without a required attribute");
  }
  ExpectRejected(RtsAttr(), kRtsMask | IBV_QP_DEST_QPN, "RTS with DEST_QPN");
  ASSERT_TRUE(Modify(RtsAttr(), kRtsMask).ok());
  // RTS -> RTS may not change the timeout (not in the optional set).
  ExpectRejected(RtsAttr(), IBV_QP_STATE | IBV_QP_TIMEOUT, "RTS->RTS with TIMEOUT");
}

TEST_F(QpStateTest, BadAttributeValuesFail) {
  ibv_qp_attr init = InitAttr();
  init.port_num = 2;
  ExpectRejected(init, kInitMask, "port 2");
  init = InitAttr();
  init.pkey_index = 3;
  ExpectRejected(init, kInitMask, "pkey index 3");
  GoTo(IBV_QPS_INIT);
  ibv_qp_attr rtr = RtrAttr();
  rtr.ah_attr.is_global = 0;
  ExpectRejected(rtr, kRtrMask, "no GRH");
  rtr = RtrAttr();
  std::memset(rtr.ah_attr.grh.dgid.raw, 0x42, 16);
  {
    // A GID nobody has: the neighbour lookup times out (not EINVAL), the state stays.
    absl::Status s = Modify(rtr, kRtrMask);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_NE(s.message().find("timed out"), std::string::npos) << s;
    EXPECT_EQ(State(), IBV_QPS_INIT);
  }
  rtr = RtrAttr();
  rtr.max_dest_rd_atomic = 17;
  ExpectRejected(rtr, kRtrMask, "max_dest_rd_atomic above the device");
  rtr = RtrAttr();
  rtr.ah_attr.grh.sgid_index = 2;
  ExpectRejected(rtr, kRtrMask, "sgid index 2 (an empty entry)");
  ASSERT_TRUE(Modify(RtrAttr(), kRtrMask).ok());
  ibv_qp_attr rts = RtsAttr();
  rts.timeout = 32;
  ExpectRejected(rts, kRtsMask, "timeout 32");
  rts = RtsAttr();
  rts.retry_cnt = 8;
  ExpectRejected(rts, kRtsMask, "retry_cnt 8");
  rts = RtsAttr();
  rts.cur_qp_state = IBV_QPS_INIT;
  ExpectRejected(rts, kRtsMask | IBV_QP_CUR_STATE, "cur_qp_state mismatch");
}

TEST_F(QpStateTest, PostSendOnlyInRtsOrErr) {
  std::vector<char> buf(4096);
  ibv_mr* mr =
      *va_->RegMr(ea_.pd, buf.data(), buf.size(), IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  for (ibv_qp_state s : {IBV_QPS_RESET, IBV_QPS_INIT, IBV_QPS_RTR}) {
    GoTo(s);
    ibv_sge sge{reinterpret_cast<uint64_t>(buf.data()), 64, mr->lkey};
    ibv_send_wr wr;
    std::memset(&wr, 0, sizeof(wr));
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(buf.data());
    wr.wr.rdma.rkey = mr->rkey;
    ibv_send_wr* bad = nullptr;
    EXPECT_EQ(va_->PostSend(ea_.qp, &wr, &bad), EINVAL) << "state " << s;
    EXPECT_EQ(bad, &wr);
    EXPECT_EQ(testing::PollAll(ea_).size(), 0u);
  }
  // In ERR a post is accepted and flushed.
  GoTo(IBV_QPS_ERR);
  EXPECT_EQ(testing::PostRdma(ea_, IBV_WR_RDMA_WRITE, mr, buf.data(), 64, mr, buf.data(), 9), 0);
  std::vector<ibv_wc> wcs = testing::PollAll(ea_);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 9u);
  EXPECT_EQ(wcs[0].status, IBV_WC_WR_FLUSH_ERR);
}

TEST_F(QpStateTest, UnsupportedOpcodeAndTooManySgesFailAtPost) {
  ASSERT_TRUE(testing::Connect(ea_, eb_).ok());
  std::vector<char> buf(4096);
  ibv_mr* mr = *va_->RegMr(ea_.pd, buf.data(), buf.size(), IBV_ACCESS_LOCAL_WRITE);
  ibv_sge sges[5];
  for (ibv_sge& s : sges) s = ibv_sge{reinterpret_cast<uint64_t>(buf.data()), 8, mr->lkey};
  ibv_send_wr wr;
  std::memset(&wr, 0, sizeof(wr));
  wr.sg_list = sges;
  wr.num_sge = 5;  // the QP allows 4
  wr.opcode = IBV_WR_RDMA_WRITE;
  ibv_send_wr* bad = nullptr;
  EXPECT_EQ(va_->PostSend(ea_.qp, &wr, &bad), EINVAL);
  wr.num_sge = 1;
  wr.opcode = IBV_WR_SEND;
  EXPECT_EQ(va_->PostSend(ea_.qp, &wr, &bad), EINVAL);
}

// --- Send-queue depth ---

class SendQueueTest : public SimVerbsControlTest {
 protected:
  void SetUp() override {
    testing::EndOptions o;
    o.max_send_wr = 4;
    ea_ = testing::OpenEnd(va_, "erdma_0", o);
    eb_ = testing::OpenEnd(vb_, "erdma_0");
    ASSERT_TRUE(testing::Connect(ea_, eb_).ok());
    src_.resize(1 << 16);
    dst_.resize(1 << 16);
    const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
    src_mr_ = *va_->RegMr(ea_.pd, src_.data(), src_.size(), access);
    dst_mr_ = *vb_->RegMr(eb_.pd, dst_.data(), dst_.size(), access);
  }
  int Write(uint64_t id, bool signaled = true) {
    return testing::PostRdma(ea_, IBV_WR_RDMA_WRITE, src_mr_, src_.data(), 1024, dst_mr_,
                             dst_.data(), id, signaled);
  }
  RcEnd ea_, eb_;
  std::vector<char> src_, dst_;
  ibv_mr* src_mr_;
  ibv_mr* dst_mr_;
};

TEST_F(SendQueueTest, FullSendQueueGivesEnomemUntilCompletionsArePolled) {
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Write(i), 0);
  EXPECT_EQ(Write(4), ENOMEM);
  // The requests complete, but their slots are only free once their completions are polled.
  world_.RunFor([] { return false; }, kMillisecond);
  EXPECT_EQ(va_->CqDepth(ea_.cq), 4);
  EXPECT_EQ(Write(4), ENOMEM);
  ibv_wc wc[2];
  ASSERT_EQ(va_->PollCq(ea_.cq, 2, wc), 2);
  EXPECT_EQ(Write(4), 0);
  EXPECT_EQ(Write(5), 0);
  EXPECT_EQ(Write(6), ENOMEM);
}

TEST_F(SendQueueTest, UnsignaledRequestsHoldSlotsUntilALaterCompletionIsPolled) {
  // Three unsignaled writes then a signaled one: polling the one completion frees all four.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Write(i, /*signaled=*/false), 0);
  EXPECT_EQ(Write(3, /*signaled=*/true), 0);
  EXPECT_EQ(Write(4), ENOMEM);
  std::vector<ibv_wc> wcs = testing::WaitForCompletions(world_, ea_, 1, kSecond);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 3u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Write(10 + i, false), 0);
  // A send queue of unsignaled requests never drains (hardware needs one signaled per queue).
  world_.RunFor([] { return false; }, kMillisecond);
  EXPECT_EQ(Write(20), ENOMEM);
}

TEST_F(SendQueueTest, ChainStopsAtTheFirstBadRequest) {
  ibv_sge sge{reinterpret_cast<uint64_t>(src_.data()), 64, src_mr_->lkey};
  ibv_send_wr wrs[6];
  std::memset(wrs, 0, sizeof(wrs));
  for (int i = 0; i < 6; ++i) {
    wrs[i].wr_id = i;
    wrs[i].sg_list = &sge;
    wrs[i].num_sge = 1;
    wrs[i].opcode = IBV_WR_RDMA_WRITE;
    wrs[i].send_flags = IBV_SEND_SIGNALED;
    wrs[i].wr.rdma.remote_addr = reinterpret_cast<uint64_t>(dst_.data());
    wrs[i].wr.rdma.rkey = dst_mr_->rkey;
    wrs[i].next = i < 5 ? &wrs[i + 1] : nullptr;
  }
  ibv_send_wr* bad = nullptr;
  EXPECT_EQ(va_->PostSend(ea_.qp, wrs, &bad), ENOMEM);
  EXPECT_EQ(bad, &wrs[4]);  // the first four were posted
  EXPECT_EQ(testing::WaitForCompletions(world_, ea_, 4, kSecond).size(), 4u);
}

}  // namespace
}  // namespace sim
