// Verbs: the seam between the RDMA transport and the NIC. It is the subset of libibverbs the
// transport uses, with the real ibv_* structs as parameter and result types, so the same transport
// code runs on hardware or soft-RoCE (IbVerbs, which forwards 1:1 to libibverbs) and in the
// deterministic simulator (sim::SimVerbs).
//
// Conventions follow libibverbs: objects are raw pointers owned by the Verbs implementation until
// their Destroy/Dealloc/Dereg call; PostSend and PollCq keep libibverbs' int results because they
// are the hot path (PostSend: 0 or an errno value, *bad_wr set; PollCq: completions written, or < 0
// on error). Everything else returns absl::Status with the errno text.
//
// Implementations must reproduce the RC behaviours in docs/verbs.md: QP state machine
// (RESET -> INIT -> RTR -> RTS, EINVAL on a wrong transition), posting only in RTS, send-queue
// depth (ENOMEM when full), MR bounds, access flags and rkey checks (IBV_WC_REM_ACCESS_ERR), local
// SGE checks (IBV_WC_LOC_PROT_ERR), retry-exceeded completions when the path is down, and once a QP
// is in ERROR every outstanding and later request completes with IBV_WC_WR_FLUSH_ERR.
#ifndef MOONCAKE_TRANSFER_RDMA_VERBS_H_
#define MOONCAKE_TRANSFER_RDMA_VERBS_H_

#include <infiniband/verbs.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mooncake {

class Verbs {
 public:
  virtual ~Verbs() = default;

  // Devices and ports.
  virtual absl::StatusOr<std::vector<std::string>> ListDevices() = 0;
  virtual absl::StatusOr<ibv_context*> OpenDevice(const std::string& name) = 0;
  virtual absl::Status CloseDevice(ibv_context* context) = 0;
  virtual absl::StatusOr<ibv_device_attr> QueryDevice(ibv_context* context) = 0;
  virtual absl::StatusOr<ibv_port_attr> QueryPort(ibv_context* context, uint8_t port) = 0;
  virtual absl::StatusOr<ibv_gid> QueryGid(ibv_context* context, uint8_t port, int index) = 0;

  // Protection domains and memory regions. `access` is a mask of IBV_ACCESS_* flags.
  virtual absl::StatusOr<ibv_pd*> AllocPd(ibv_context* context) = 0;
  virtual absl::Status DeallocPd(ibv_pd* pd) = 0;
  virtual absl::StatusOr<ibv_mr*> RegMr(ibv_pd* pd, void* addr, size_t length, int access) = 0;
  virtual absl::Status DeregMr(ibv_mr* mr) = 0;

  // Completion queues and RC queue pairs.
  virtual absl::StatusOr<ibv_cq*> CreateCq(ibv_context* context, int cqe) = 0;
  virtual absl::Status DestroyCq(ibv_cq* cq) = 0;
  virtual absl::StatusOr<ibv_qp*> CreateQp(ibv_pd* pd, ibv_qp_init_attr* attr) = 0;
  virtual absl::Status DestroyQp(ibv_qp* qp) = 0;
  virtual absl::Status ModifyQp(ibv_qp* qp, ibv_qp_attr* attr, int attr_mask) = 0;
  virtual absl::StatusOr<ibv_qp_state> QueryQpState(ibv_qp* qp) = 0;

  // Data path.
  virtual int PostSend(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad_wr) = 0;
  virtual int PollCq(ibv_cq* cq, int num_entries, ibv_wc* wc) = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_RDMA_VERBS_H_
