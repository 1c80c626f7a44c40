// IbVerbsLibrary: libibverbs loaded at run time (dlopen), never linked at load time.
//
// One build then runs everywhere (docs/architecture.md, "The wheel"): on a host without rdma-core
// the wheel imports and serves TCP and shared memory, and only protocol=rdma fails, with an error
// that says rdma-core is missing; on a host with rdma-core the host's own libibverbs and its
// providers are used. Only the functions libibverbs exports are resolved here; the data-path calls
// (ibv_post_send, ibv_poll_cq) are inline in <infiniband/verbs.h> and go through the context's ops.
#ifndef MOONCAKE_TRANSFER_RDMA_IBVERBS_LIBRARY_H_
#define MOONCAKE_TRANSFER_RDMA_IBVERBS_LIBRARY_H_

#include <infiniband/verbs.h>

#include <string>

#include "absl/status/statusor.h"

namespace mooncake {

// The soname rdma-core has shipped since libibverbs 1.1 (rdma-core 13 and later).
inline constexpr char kIbVerbsSoname[] = "libibverbs.so.1";

struct IbVerbsLibrary {
  // Invariant: every pointer is non-null once Load() returned this table. Each is bound to the
  // IBVERBS_1.1 version of its symbol, the ABI <infiniband/verbs.h> declares (1.0 is the legacy
  // one).
  ibv_device** (*get_device_list)(int* num_devices);
  void (*free_device_list)(ibv_device** list);
  const char* (*get_device_name)(ibv_device* device);
  ibv_context* (*open_device)(ibv_device* device);
  int (*close_device)(ibv_context* context);
  int (*query_device)(ibv_context* context, ibv_device_attr* attr);
  // The pre-extension entry point; QueryPort prefers the context's query_port op when it has one,
  // as the header's inline ibv_query_port does.
  int (*query_port)(ibv_context* context, uint8_t port, ibv_port_attr* attr);
  int (*query_gid)(ibv_context* context, uint8_t port, int index, ibv_gid* gid);
  ibv_pd* (*alloc_pd)(ibv_context* context);
  int (*dealloc_pd)(ibv_pd* pd);
  ibv_mr* (*reg_mr)(ibv_pd* pd, void* addr, size_t length, int access);
  int (*dereg_mr)(ibv_mr* mr);
  ibv_cq* (*create_cq)(ibv_context* context, int cqe, void* cq_context, ibv_comp_channel* channel,
                       int comp_vector);
  int (*destroy_cq)(ibv_cq* cq);
  ibv_qp* (*create_qp)(ibv_pd* pd, ibv_qp_init_attr* attr);
  int (*destroy_qp)(ibv_qp* qp);
  int (*modify_qp)(ibv_qp* qp, ibv_qp_attr* attr, int attr_mask);
  int (*query_qp)(ibv_qp* qp, ibv_qp_attr* attr, int attr_mask, ibv_qp_init_attr* init_attr);

  // Loads `soname` once per process (later calls with the same name return the same table; the
  // library stays loaded for the life of the process, as providers expect). An error names the
  // library, the loader's reason and what to install: FAILED_PRECONDITION when the library is
  // absent, UNIMPLEMENTED when it lacks a symbol (a libibverbs older than 1.1).
  static absl::StatusOr<const IbVerbsLibrary*> Load(const std::string& soname = kIbVerbsSoname);
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_RDMA_IBVERBS_LIBRARY_H_
