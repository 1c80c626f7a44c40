// IbVerbs: the production Verbs, forwarding 1:1 to libibverbs (hardware NICs or soft-RoCE rxe).
// libibverbs is loaded at run time (IbVerbsLibrary); without it every call fails with the loader's
// FAILED_PRECONDITION error, which says that rdma-core is missing.
#ifndef MOONCAKE_TRANSFER_RDMA_IB_VERBS_H_
#define MOONCAKE_TRANSFER_RDMA_IB_VERBS_H_

#include <string>

#include "mooncake/transfer/rdma/ibverbs_library.h"
#include "mooncake/transfer/rdma/verbs.h"

namespace mooncake {

class IbVerbs final : public Verbs {
 public:
  // `soname`: the library to load (tests name a missing one to see the error users get).
  explicit IbVerbs(const std::string& soname = kIbVerbsSoname)
      : lib_(IbVerbsLibrary::Load(soname)) {}

  absl::StatusOr<std::vector<std::string>> ListDevices() override;
  absl::StatusOr<ibv_context*> OpenDevice(const std::string& name) override;
  absl::Status CloseDevice(ibv_context* context) override;
  absl::StatusOr<ibv_device_attr> QueryDevice(ibv_context* context) override;
  absl::StatusOr<ibv_port_attr> QueryPort(ibv_context* context, uint8_t port) override;
  absl::StatusOr<ibv_gid> QueryGid(ibv_context* context, uint8_t port, int index) override;
  absl::StatusOr<ibv_pd*> AllocPd(ibv_context* context) override;
  absl::Status DeallocPd(ibv_pd* pd) override;
  absl::StatusOr<ibv_mr*> RegMr(ibv_pd* pd, void* addr, size_t length, int access) override;
  absl::Status DeregMr(ibv_mr* mr) override;
  absl::StatusOr<ibv_cq*> CreateCq(ibv_context* context, int cqe) override;
  absl::Status DestroyCq(ibv_cq* cq) override;
  absl::StatusOr<ibv_qp*> CreateQp(ibv_pd* pd, ibv_qp_init_attr* attr) override;
  absl::Status DestroyQp(ibv_qp* qp) override;
  absl::Status ModifyQp(ibv_qp* qp, ibv_qp_attr* attr, int attr_mask) override;
  absl::StatusOr<ibv_qp_state> QueryQpState(ibv_qp* qp) override;
  int PostSend(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad_wr) override;
  int PollCq(ibv_cq* cq, int num_entries, ibv_wc* wc) override;

 private:
  const absl::StatusOr<const IbVerbsLibrary*> lib_;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_RDMA_IB_VERBS_H_
