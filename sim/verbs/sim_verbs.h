// SimVerbs: mooncake::Verbs on the simulated network, one instance per simulated host, so the RDMA
// transport runs unchanged in the deterministic simulator. It reproduces the RC behaviours of
// docs/verbs.md: the QP state machine with the kernel's attribute-mask rules, posting only in
// RTS (EINVAL in RESET/INIT/RTR; in ERR a post is accepted and flushed), send-queue depth, MR
// bounds / access flags / keys, READ and WRITE that memcpy the real bytes when the simulated
// packets arrive, per-QP completion order, READ credits (max_rd_atomic), go-back-N retransmission
// with the ACK timeout and retry count, RETRY_EXC_ERR when the path is dead, and the first error
// moving the QP to ERROR with every other request flushed.
//
//   sim::Simulator sim(7);
//   sim::Network net(&sim);
//   sim::HostId a = net.AddHost("a"), b = net.AddHost("b");
//   net.AddNic(a, spec_erdma0);  net.AddNic(b, spec_erdma0);
//   sim::SimVerbsFabric fabric(&sim, &net);
//   mooncake::Verbs* va = fabric.ForHost(a);   // hand this to the RDMA transport on host a
//   ... ibv calls through va; completions appear as simulated time passes:
//   sim.RunUntil([&] { return va->PollCq(cq, 16, wc) > 0; }, sim::kSecond);
// (world.h builds all of this in one call.)
//
// What the returned ibv_* structs hold (all other fields are zero):
//   ibv_context: device (an ibv_device with name, dev_name "uverbs<N>", node_type CA, transport
//                IB), cmd_fd = async_fd = -1, num_comp_vectors = 1.
//   ibv_pd: context, handle.   ibv_mr: context, pd, addr, length, handle, lkey, rkey.
//   ibv_cq: context, cqe (the capacity asked for), handle.
//   ibv_qp: context, qp_context, pd, send_cq, recv_cq, handle, qp_num, state (kept current, also
//           when an error completion moves the QP to ERROR), qp_type.
// lkey and rkey differ (a transport that sends an lkey as rkey fails, as on some NICs), and keys
// and QP numbers are never reused. Objects must be released with the matching
// Destroy/Dealloc/Dereg; a released object's memory stays valid (a later call on it fails cleanly
// instead of crashing).
//
// Simplifications (see also the comments in sim_verbs_internal.h):
//   - Only RC QPs, RDMA WRITE and RDMA READ (plus IBV_SEND_INLINE, FENCE, SIGNALED, sq_sig_all).
//     No receive queue, SEND, atomics, SRQ, UD, alternate paths or SQD.
//   - One port (1) per device, one GID (index 0), one P_Key (index 0), RoCE link layer.
//   - Send-queue slots are released when a completion of that QP is polled (it releases every
//     earlier request too), as hardware does: a QP that never signals fills up with ENOMEM.
//   - Sequence errors are NAKed (retransmit after one path latency); a lost tail, a dead path or a
//     silent peer is detected by the ACK timer (4.096 us * 2^timeout; timeout 0 waits forever).
//     Retries that make no progress count towards retry_cnt; RETRY_EXC_ERR after retry_cnt + 1.
//   - ACKs are not lost and do not occupy ports; READ responses do (on the responder's NIC).
//   - A remote access violation moves the responder QP to ERROR too (IBV_EVENT_QP_ACCESS_ERR).
//   - A PSN mismatch between the two sides makes the responder drop the requests (the requester
//     ends with RETRY_EXC_ERR) rather than NAK or silently ACK them.
//   - After the requester QP leaves RTS its packets still in flight are discarded.
//   - CQ overrun: the completion is dropped, the CQ is broken and PollCq returns -1 from then on.
//   - Registration is instantaneous in simulated time. No asynchronous events (the Verbs seam has
//     none); port state is visible through QueryPort.
//   - Host crash: the host's QPs stop answering and its keys stop resolving; every object of the
//     old incarnation then fails calls with EIO. After RestartHost the host opens devices afresh.
// Not thread-safe: the simulator's thread makes every call.
#ifndef SIM_VERBS_SIM_VERBS_H_
#define SIM_VERBS_SIM_VERBS_H_

#include <infiniband/verbs.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mooncake/transfer/rdma/verbs.h"
#include "sim/kernel/network.h"
#include "sim/kernel/simulator.h"

namespace sim {

namespace internal {
struct SimContext;
struct SimPd;
struct SimMr;
struct SimCq;
class SimQp;
}  // namespace internal

struct SimVerbsOptions {
  // copy_data = false skips the memcpy of payloads (timing only), for bandwidth benchmarks whose
  // bytes are not checked. Everything else (checks, timing, completions) is unchanged.
  bool copy_data = true;
  // A restarted host numbers its memory keys from the start again, as a real NIC may reuse the
  // key indices of a dead process: a stale rkey can then name a new process's region.
  bool reuse_keys_after_restart = false;
  // What a request does when its QP's own NIC is down (docs/verbs.md, "Local port down").
  //   kPacketsLost: packets leave into nothing, as on a NIC whose link dropped: the ACK timer
  //     retries and the oldest request fails with RETRY_EXC_ERR after retry_cnt tries.
  //   kFailAtSend: as soft-RoCE (rxe) does: the first packet the QP tries to send fails its
  //     request at once with LOC_QP_OP_ERR (the route to the peer is gone); the QP goes to ERROR.
  enum class LocalPortDown { kPacketsLost, kFailAtSend };
  LocalPortDown local_port_down = LocalPortDown::kPacketsLost;
};

// SimVerbsStats counts what one host's SimVerbs did.
struct SimVerbsStats {
  uint64_t writes_posted = 0;
  uint64_t reads_posted = 0;
  uint64_t bytes_written = 0;  // payload accepted by remote responders for this host's WRITEs
  uint64_t bytes_read = 0;     // READ payload landed in this host's memory
  uint64_t completions = 0;    // CQEs generated (success and error)
  uint64_t error_completions = 0;
  uint64_t retransmissions = 0;  // go-back-N recoveries (NAK or timeout)
  uint64_t ack_timeouts = 0;
  uint64_t cq_overruns = 0;
};

class SimVerbsFabric;

class SimVerbs final : public mooncake::Verbs {
 public:
  // Use SimVerbsFabric::ForHost rather than constructing directly.
  SimVerbs(SimVerbsFabric* fabric, HostId host);
  ~SimVerbs() override;
  SimVerbs(const SimVerbs&) = delete;
  SimVerbs& operator=(const SimVerbs&) = delete;

  // --- mooncake::Verbs ---
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

  // --- Simulation extras ---
  HostId host() const { return host_; }
  Simulator* sim() const;
  Network* network() const;
  SimVerbsFabric* fabric() const { return fabric_; }
  const SimVerbsStats& stats() const { return stats_; }

  // SetCompletionCallback is the simulator's completion channel: after completions are added to
  // `cq`, `callback` runs once from a simulator event at the same simulated time (a burst of
  // completions gives one call). Typical use: schedule the transport's Poll(). nullptr removes it.
  absl::Status SetCompletionCallback(ibv_cq* cq, std::function<void()> callback);

  // NicOf returns the NIC an open device context belongs to (kNoId if `context` is not ours).
  NicId NicOf(ibv_context* context) const;

  // CqDepth returns the number of completions waiting in `cq` (0 for an unknown CQ).
  int CqDepth(ibv_cq* cq) const;

 private:
  friend class internal::SimQp;

  // Object validation: the object is ours, not destroyed and from this host incarnation.
  absl::Status CheckContext(ibv_context* context, internal::SimContext** out) const;
  absl::Status CheckPd(ibv_pd* pd, internal::SimPd** out) const;
  absl::Status CheckCq(ibv_cq* cq, internal::SimCq** out) const;
  absl::Status CheckQp(ibv_qp* qp, internal::SimQp** out) const;
  absl::Status CheckAlive(const char* call) const;
  uint64_t incarnation() const;

  // Lookups used by the data path; they find live objects only.
  internal::SimMr* FindMrByLkey(uint32_t lkey) const;
  internal::SimMr* FindMrByRkey(uint32_t rkey) const;
  internal::SimQp* FindQp(uint32_t qp_num) const;
  const DeviceLimits& limits(NicId nic) const;

  // PushCompletion appends to `cq` (overrun breaks the CQ) and schedules its callback.
  void PushCompletion(internal::SimCq* cq, internal::SimQp* qp, uint64_t seq, const ibv_wc& wc);
  // PurgeCompletions drops `qp`'s completions from its CQ (QP reset or destroyed).
  void PurgeCompletions(internal::SimQp* qp);
  void OnHostCrashed();

  SimVerbsFabric* const fabric_;
  const HostId host_;
  uint64_t next_object_id_ = 1;
  uint32_t next_key_index_ = 1;
  uint32_t next_qp_num_ = 0x100;
  SimVerbsStats stats_;

  // Every object ever created, by creation order (released ones stay as tombstones).
  std::map<uint64_t, std::unique_ptr<internal::SimContext>> contexts_;
  std::map<uint64_t, std::unique_ptr<internal::SimPd>> pds_;
  std::map<uint64_t, std::unique_ptr<internal::SimMr>> mrs_;
  std::map<uint64_t, std::unique_ptr<internal::SimCq>> cqs_;
  std::map<uint64_t, std::unique_ptr<internal::SimQp>> qps_;
  // Live objects by key and QP number; lookup only (never iterated, so order cannot leak).
  absl::flat_hash_map<uint32_t, internal::SimMr*> mr_by_lkey_;
  absl::flat_hash_map<uint32_t, internal::SimMr*> mr_by_rkey_;
  absl::flat_hash_map<uint32_t, internal::SimQp*> qp_by_num_;
  int live_mrs_ = 0;
};

// SimVerbsFabric owns one SimVerbs per host of a network and lets each find its peers (a QP's
// remote NIC leads to the SimVerbs that holds the remote QP and MRs). It must outlive every use of
// the simulator and network it was built on.
class SimVerbsFabric {
 public:
  SimVerbsFabric(Simulator* sim, Network* network, SimVerbsOptions options = SimVerbsOptions());
  ~SimVerbsFabric();
  SimVerbsFabric(const SimVerbsFabric&) = delete;
  SimVerbsFabric& operator=(const SimVerbsFabric&) = delete;

  // ForHost returns the host's SimVerbs, creating it on first use.
  SimVerbs* ForHost(HostId host);
  // ForNic returns the SimVerbs of the NIC's host.
  SimVerbs* ForNic(NicId nic) { return ForHost(network_->nic_host(nic)); }

  Simulator* sim() const { return sim_; }
  Network* network() const { return network_; }
  const SimVerbsOptions& options() const { return options_; }

 private:
  Simulator* const sim_;
  Network* const network_;
  const SimVerbsOptions options_;
  std::map<HostId, std::unique_ptr<SimVerbs>> verbs_;
};

}  // namespace sim

#endif  // SIM_VERBS_SIM_VERBS_H_
