// Test support for code running on SimVerbs (or any mooncake::Verbs): open a device with a PD and a
// CQ, create RC QPs, walk them through INIT -> RTR -> RTS against a peer, post one RDMA operation,
// and run the simulator until completions arrive. Tests of sim/ and of the RDMA transport share it.
//
//   sim::World world(1);
//   HostId a = world.AddHost("a", {"mlx5_0"}), b = world.AddHost("b", {"mlx5_0"});
//   sim::testing::RcEnd ea = sim::testing::OpenEnd(world.verbs(a), "mlx5_0");
//   sim::testing::RcEnd eb = sim::testing::OpenEnd(world.verbs(b), "mlx5_0");
//   ASSERT_TRUE(sim::testing::Connect(ea, eb).ok());
//   sim::testing::PostRdma(ea, IBV_WR_RDMA_WRITE, local_mr, src, len, remote_mr, dst, /*wr_id=*/1);
//   std::vector<ibv_wc> wcs = sim::testing::WaitForCompletions(world, ea, 1, sim::kSecond);
#ifndef SIM_VERBS_VERBS_TEST_UTIL_H_
#define SIM_VERBS_VERBS_TEST_UTIL_H_

#include <infiniband/verbs.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "mooncake/transfer/rdma/verbs.h"
#include "sim/verbs/world.h"

namespace sim {
namespace testing {

// RcEnd is one side of an RC connection: device, PD, CQ and a QP.
struct RcEnd {
  mooncake::Verbs* verbs = nullptr;
  ibv_context* context = nullptr;
  ibv_pd* pd = nullptr;
  ibv_cq* cq = nullptr;
  ibv_qp* qp = nullptr;
  ibv_gid gid{};
};

struct EndOptions {
  int max_send_wr = 64;
  int max_send_sge = 4;
  int cq_entries = 4096;
  int sq_sig_all = 0;
};

// OpenEnd opens `device` and creates a PD, a CQ and an RC QP (in RESET); MC_CHECKs on failure.
RcEnd OpenEnd(mooncake::Verbs* verbs, const std::string& device,
              const EndOptions& options = EndOptions());

// CreateQp adds another RC QP on the end's PD and CQ (returned in RESET).
ibv_qp* CreateQp(const RcEnd& end, const EndOptions& options = EndOptions());

struct ConnectOptions {
  unsigned access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
  ibv_mtu mtu = IBV_MTU_4096;
  uint8_t timeout = 14;  // 67 ms per try
  uint8_t retry_cnt = 7;
  uint8_t max_rd_atomic = 16;
  uint8_t max_dest_rd_atomic = 16;
  uint32_t psn_a = 100;  // first PSN a sends (b's rq_psn)
  uint32_t psn_b = 7000;
  int gid_index = 0;  // grh.sgid_index
};

// ToInit / ToRtr / ToRts perform one transition with the usual attributes.
absl::Status ToInit(mooncake::Verbs* verbs, ibv_qp* qp, unsigned access);
absl::Status ToRtr(mooncake::Verbs* verbs, ibv_qp* qp, const ibv_gid& remote_gid,
                   uint32_t remote_qpn, uint32_t rq_psn, const ConnectOptions& o);
absl::Status ToRts(mooncake::Verbs* verbs, ibv_qp* qp, uint32_t sq_psn, const ConnectOptions& o);

// Connect brings a.qp and b.qp to RTS, each aimed at the other.
absl::Status Connect(const RcEnd& a, const RcEnd& b, const ConnectOptions& o = ConnectOptions());
absl::Status ConnectQps(const RcEnd& a, ibv_qp* qa, const RcEnd& b, ibv_qp* qb,
                        const ConnectOptions& o = ConnectOptions());

// PostRdma posts one READ or WRITE with one SGE; returns PostSend's result.
int PostRdma(const RcEnd& end, ibv_wr_opcode opcode, const ibv_mr* local_mr, const void* local,
             uint32_t length, const ibv_mr* remote_mr, const void* remote, uint64_t wr_id,
             bool signaled = true, ibv_qp* qp = nullptr);

// PollAll drains the end's CQ.
std::vector<ibv_wc> PollAll(const RcEnd& end);

// WaitForCompletions runs the world until `count` completions were polled from the end's CQ or
// `timeout` of simulated time passed, and returns what it polled.
std::vector<ibv_wc> WaitForCompletions(World& world, const RcEnd& end, size_t count,
                                       SimTime timeout);

// StatusName is ibv_wc_status_str without linking libibverbs.
const char* StatusName(ibv_wc_status status);

}  // namespace testing
}  // namespace sim

#endif  // SIM_VERBS_VERBS_TEST_UTIL_H_
