#include "sim/verbs/verbs_test_util.h"

#include <cstring>

#include "mooncake/common/logging.h"

namespace sim {
namespace testing {

RcEnd OpenEnd(mooncake::Verbs* verbs, const std::string& device, const EndOptions& options) {
  RcEnd end;
  end.verbs = verbs;
  auto context = verbs->OpenDevice(device);
  MC_CHECK(context.ok()) << context.status();
  end.context = *context;
  auto pd = verbs->AllocPd(end.context);
  MC_CHECK(pd.ok()) << pd.status();
  end.pd = *pd;
  auto cq = verbs->CreateCq(end.context, options.cq_entries);
  MC_CHECK(cq.ok()) << cq.status();
  end.cq = *cq;
  auto gid = verbs->QueryGid(end.context, 1, 0);
  MC_CHECK(gid.ok()) << gid.status();
  end.gid = *gid;
  end.qp = CreateQp(end, options);
  return end;
}

ibv_qp* CreateQp(const RcEnd& end, const EndOptions& options) {
  ibv_qp_init_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.send_cq = end.cq;
  attr.recv_cq = end.cq;
  attr.qp_type = IBV_QPT_RC;
  attr.cap.max_send_wr = options.max_send_wr;
  attr.cap.max_recv_wr = 1;
  attr.cap.max_send_sge = options.max_send_sge;
  attr.cap.max_recv_sge = 1;
  attr.cap.max_inline_data = 64;
  attr.sq_sig_all = options.sq_sig_all;
  auto qp = end.verbs->CreateQp(end.pd, &attr);
  MC_CHECK(qp.ok()) << qp.status();
  return *qp;
}

absl::Status ToInit(mooncake::Verbs* verbs, ibv_qp* qp, unsigned access) {
  ibv_qp_attr a;
  std::memset(&a, 0, sizeof(a));
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = 1;
  a.qp_access_flags = access;
  return verbs->ModifyQp(qp, &a,
                         IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

absl::Status ToRtr(mooncake::Verbs* verbs, ibv_qp* qp, const ibv_gid& remote_gid,
                   uint32_t remote_qpn, uint32_t rq_psn, const ConnectOptions& o) {
  ibv_qp_attr a;
  std::memset(&a, 0, sizeof(a));
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = o.mtu;
  a.dest_qp_num = remote_qpn;
  a.rq_psn = rq_psn;
  a.max_dest_rd_atomic = o.max_dest_rd_atomic;
  a.min_rnr_timer = 12;
  a.ah_attr.is_global = 1;
  a.ah_attr.grh.dgid = remote_gid;
  a.ah_attr.grh.sgid_index = static_cast<uint8_t>(o.gid_index);
  a.ah_attr.grh.hop_limit = 1;
  a.ah_attr.port_num = 1;
  return verbs->ModifyQp(qp, &a,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                             IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

absl::Status ToRts(mooncake::Verbs* verbs, ibv_qp* qp, uint32_t sq_psn, const ConnectOptions& o) {
  ibv_qp_attr a;
  std::memset(&a, 0, sizeof(a));
  a.qp_state = IBV_QPS_RTS;
  a.timeout = o.timeout;
  a.retry_cnt = o.retry_cnt;
  a.rnr_retry = 7;
  a.sq_psn = sq_psn;
  a.max_rd_atomic = o.max_rd_atomic;
  return verbs->ModifyQp(qp, &a,
                         IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                             IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

absl::Status ConnectQps(const RcEnd& a, ibv_qp* qa, const RcEnd& b, ibv_qp* qb,
                        const ConnectOptions& o) {
  absl::Status s = ToInit(a.verbs, qa, o.access);
  if (s.ok()) s = ToInit(b.verbs, qb, o.access);
  if (s.ok()) s = ToRtr(a.verbs, qa, b.gid, qb->qp_num, o.psn_b, o);
  if (s.ok()) s = ToRtr(b.verbs, qb, a.gid, qa->qp_num, o.psn_a, o);
  if (s.ok()) s = ToRts(a.verbs, qa, o.psn_a, o);
  if (s.ok()) s = ToRts(b.verbs, qb, o.psn_b, o);
  return s;
}

absl::Status Connect(const RcEnd& a, const RcEnd& b, const ConnectOptions& o) {
  return ConnectQps(a, a.qp, b, b.qp, o);
}

int PostRdma(const RcEnd& end, ibv_wr_opcode opcode, const ibv_mr* local_mr, const void* local,
             uint32_t length, const ibv_mr* remote_mr, const void* remote, uint64_t wr_id,
             bool signaled, ibv_qp* qp) {
  ibv_sge sge;
  sge.addr = reinterpret_cast<uint64_t>(local);
  sge.length = length;
  sge.lkey = local_mr != nullptr ? local_mr->lkey : 0;
  ibv_send_wr wr;
  std::memset(&wr, 0, sizeof(wr));
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = opcode;
  wr.send_flags = signaled ? IBV_SEND_SIGNALED : 0;
  wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(remote);
  wr.wr.rdma.rkey = remote_mr != nullptr ? remote_mr->rkey : 0;
  ibv_send_wr* bad = nullptr;
  return end.verbs->PostSend(qp != nullptr ? qp : end.qp, &wr, &bad);
}

std::vector<ibv_wc> PollAll(const RcEnd& end) {
  std::vector<ibv_wc> out;
  ibv_wc wc[32];
  int n;
  while ((n = end.verbs->PollCq(end.cq, 32, wc)) > 0) out.insert(out.end(), wc, wc + n);
  return out;
}

std::vector<ibv_wc> WaitForCompletions(World& world, const RcEnd& end, size_t count,
                                       SimTime timeout) {
  std::vector<ibv_wc> out;
  world.RunFor(
      [&] {
        std::vector<ibv_wc> more = PollAll(end);
        out.insert(out.end(), more.begin(), more.end());
        return out.size() >= count;
      },
      timeout);
  return out;
}

const char* StatusName(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS:
      return "success";
    case IBV_WC_LOC_LEN_ERR:
      return "local length error";
    case IBV_WC_LOC_PROT_ERR:
      return "local protection error";
    case IBV_WC_WR_FLUSH_ERR:
      return "Work Request Flushed Error";
    case IBV_WC_REM_ACCESS_ERR:
      return "remote access error";
    case IBV_WC_RETRY_EXC_ERR:
      return "transport retry counter exceeded";
    default:
      return "other error";
  }
}

}  // namespace testing
}  // namespace sim
