#include "mooncake/transfer/rdma/ib_verbs.h"

#include <errno.h>
#include <string.h>

#include "absl/strings/str_cat.h"

namespace mooncake {
namespace {

// The errno of a failed verbs call, as the status code the Verbs seam promises (SimVerbs maps the
// same way): EINVAL for a bad argument or transition, ENOMEM for a full queue or no memory.
absl::Status ErrnoStatus(absl::string_view call, int err) {
  const std::string message = absl::StrCat(call, ": ", strerror(err));
  switch (err) {
    case EINVAL:
      return absl::InvalidArgumentError(message);
    case ENOMEM:
      return absl::ResourceExhaustedError(message);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(message);
    case ENODEV:
    case ENOENT:
      return absl::NotFoundError(message);
    default:
      return absl::UnavailableError(message);
  }
}

}  // namespace

// Declares `ibv`, the loaded library, or returns the load error (rdma-core missing).
#define MC_REQUIRE_LIBIBVERBS(ibv)      \
  if (!lib_.ok()) return lib_.status(); \
  const IbVerbsLibrary& ibv = **lib_

absl::StatusOr<std::vector<std::string>> IbVerbs::ListDevices() {
  MC_REQUIRE_LIBIBVERBS(ibv);
  int n = 0;
  errno = 0;
  ibv_device** list = ibv.get_device_list(&n);
  if (list == nullptr) {
    return ErrnoStatus("ibv_get_device_list (is an RDMA driver or rdma_rxe loaded?)", errno);
  }
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.emplace_back(ibv.get_device_name(list[i]));
  ibv.free_device_list(list);
  return names;
}

absl::StatusOr<ibv_context*> IbVerbs::OpenDevice(const std::string& name) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  int n = 0;
  ibv_device** list = ibv.get_device_list(&n);
  if (list == nullptr) return ErrnoStatus("ibv_get_device_list", errno);
  ibv_context* ctx = nullptr;
  int err = ENODEV;
  for (int i = 0; i < n; ++i) {
    if (name == ibv.get_device_name(list[i])) {
      ctx = ibv.open_device(list[i]);
      err = errno;
      break;
    }
  }
  ibv.free_device_list(list);
  if (ctx == nullptr) return ErrnoStatus(absl::StrCat("ibv_open_device ", name), err);
  return ctx;
}

absl::Status IbVerbs::CloseDevice(ibv_context* context) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  int rc = ibv.close_device(context);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus("ibv_close_device", errno);
}

absl::StatusOr<ibv_device_attr> IbVerbs::QueryDevice(ibv_context* context) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  ibv_device_attr attr;
  int rc = ibv.query_device(context, &attr);
  if (rc != 0) return ErrnoStatus("ibv_query_device", rc);
  return attr;
}

absl::StatusOr<ibv_port_attr> IbVerbs::QueryPort(ibv_context* context, uint8_t port) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  ibv_port_attr attr;
  // As <infiniband/verbs.h>'s inline ibv_query_port: the context's extended op when it has one,
  // else the exported call, which fills only the legacy prefix of the attributes.
  verbs_context* vctx = verbs_get_ctx_op(context, query_port);
  int rc;
  if (vctx != nullptr) {
    rc = vctx->query_port(context, port, &attr, sizeof(attr));
  } else {
    memset(&attr, 0, sizeof(attr));
    rc = ibv.query_port(context, port, &attr);
  }
  if (rc != 0) return ErrnoStatus("ibv_query_port", rc);
  return attr;
}

absl::StatusOr<ibv_gid> IbVerbs::QueryGid(ibv_context* context, uint8_t port, int index) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  ibv_gid gid;
  int rc = ibv.query_gid(context, port, index, &gid);
  if (rc != 0) return ErrnoStatus("ibv_query_gid", rc);
  return gid;
}

absl::StatusOr<ibv_pd*> IbVerbs::AllocPd(ibv_context* context) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  ibv_pd* pd = ibv.alloc_pd(context);
  if (pd == nullptr) return ErrnoStatus("ibv_alloc_pd", errno);
  return pd;
}

absl::Status IbVerbs::DeallocPd(ibv_pd* pd) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  int rc = ibv.dealloc_pd(pd);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus("ibv_dealloc_pd", rc);
}

absl::StatusOr<ibv_mr*> IbVerbs::RegMr(ibv_pd* pd, void* addr, size_t length, int access) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  ibv_mr* mr = ibv.reg_mr(pd, addr, length, access);
  if (mr == nullptr) return ErrnoStatus("ibv_reg_mr", errno);
  return mr;
}

absl::Status IbVerbs::DeregMr(ibv_mr* mr) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  int rc = ibv.dereg_mr(mr);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus("ibv_dereg_mr", rc);
}

absl::StatusOr<ibv_cq*> IbVerbs::CreateCq(ibv_context* context, int cqe) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  ibv_cq* cq = ibv.create_cq(context, cqe, nullptr, nullptr, 0);
  if (cq == nullptr) return ErrnoStatus("ibv_create_cq", errno);
  return cq;
}

absl::Status IbVerbs::DestroyCq(ibv_cq* cq) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  int rc = ibv.destroy_cq(cq);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus("ibv_destroy_cq", rc);
}

absl::StatusOr<ibv_qp*> IbVerbs::CreateQp(ibv_pd* pd, ibv_qp_init_attr* attr) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  ibv_qp* qp = ibv.create_qp(pd, attr);
  if (qp == nullptr) return ErrnoStatus("ibv_create_qp", errno);
  return qp;
}

absl::Status IbVerbs::DestroyQp(ibv_qp* qp) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  int rc = ibv.destroy_qp(qp);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus("ibv_destroy_qp", rc);
}

absl::Status IbVerbs::ModifyQp(ibv_qp* qp, ibv_qp_attr* attr, int attr_mask) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  int rc = ibv.modify_qp(qp, attr, attr_mask);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus("ibv_modify_qp", rc);
}

absl::StatusOr<ibv_qp_state> IbVerbs::QueryQpState(ibv_qp* qp) {
  MC_REQUIRE_LIBIBVERBS(ibv);
  ibv_qp_attr attr;
  ibv_qp_init_attr init;
  int rc = ibv.query_qp(qp, &attr, IBV_QP_STATE, &init);
  if (rc != 0) return ErrnoStatus("ibv_query_qp", rc);
  return attr.qp_state;
}

int IbVerbs::PostSend(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad_wr) {
  return ibv_post_send(qp, wr, bad_wr);
}

int IbVerbs::PollCq(ibv_cq* cq, int num_entries, ibv_wc* wc) {
  return ibv_poll_cq(cq, num_entries, wc);
}

#undef MC_REQUIRE_LIBIBVERBS

}  // namespace mooncake
