// RdmaTransport: one-sided RDMA READ/WRITE over RC queue pairs, striped across several NICs.
//
// Control path (rdma_connection.cc): devices, memory registration in chunks below each NIC's
// max_mr_size, endpoints (one per (local NIC, remote NIC) rail, each with several RC QPs) connected
// through an RdmaHandshake, and the endpoints peers connected to us (accepted). Data path
// (rdma_transport.cc): requests are cut into slices (64 KiB by default, and at MR chunk boundaries
// on both sides, so a request may span chunks); each Poll posts waiting slices to any rail with
// room, polls the CQs, and finishes slices.
//
// Progress is explicit: nothing happens outside Submit() and Poll(). Production runs Poll() on a
// worker thread; the simulator calls it between events. With an Executor, rail handshakes run
// there and Poll() never blocks; without one (tests of the transport alone) a rail's first post
// runs its handshake inline.
//
// Failures: the first error completion puts a QP in ERROR and flushes the rest (docs/verbs.md), so
// the endpoint is torn down and re-handshaken on next use. RETRY_EXC_ERR pauses the rail for
// `rail_pause`, after which one slice probes it; the slices that failed or were flushed are posted
// again on other rails. Remote and local access errors are the caller's fault: the request fails
// with INVALID_PARAMS and is not retried. A slice that fails `max_attempts` times fails its request
// with TRANSFER_FAIL. Every slice completes exactly once.
#ifndef MOONCAKE_TRANSFER_RDMA_RDMA_TRANSPORT_H_
#define MOONCAKE_TRANSFER_RDMA_RDMA_TRANSPORT_H_

#include <infiniband/verbs.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/executor.h"
#include "mooncake/transfer/rdma/verbs.h"
#include "mooncake/transfer/segment_descriptor.h"
#include "mooncake/transfer/transfer_batch.h"

namespace mooncake {

struct RdmaOptions {
  std::vector<std::string> devices;  // MOONCAKE_DEVICE, e.g. {"erdma_0", "erdma_1"}
  // At most the ports' max_msg_sz and 2^31 (a work request's length is 32 bits).
  uint64_t slice_size = 64 << 10;
  int qps_per_endpoint = 2;
  int max_wr_per_qp = 32;     // outstanding work requests per QP
  int cq_entries = 4096;      // per device; bounds outstanding WRs on that device
  uint64_t max_mr_chunk = 0;  // 0 = each device's max_mr_size
  absl::Duration rail_pause = absl::Milliseconds(500);
  int max_attempts = 4;     // tries per slice before its request fails
  uint8_t qp_timeout = 14;  // 4.096 us * 2^14 = 67 ms per try
  uint8_t retry_cnt = 7;
  uint8_t port = 1;   // MC_IB_PORT
  int gid_index = 0;  // MC_GID_INDEX; RoCE v2 over IPv4 is usually 1 (rxe) or 3 (mlx5)
  int path_mtu = 0;   // MC_MTU, bytes (256..4096); 0 = each port's active MTU
  // This process's instance (SegmentDescriptor::instance), sent in every handshake so a peer can
  // tell it connected to a later incarnation than the descriptor it holds. 0 = unknown.
  uint64_t instance = 0;
};

// EndpointInfo is what the two sides of a rail exchange to connect their QPs.
struct EndpointInfo {
  std::string segment;    // the sender's segment name
  std::string local_nic;  // the sender's NIC
  std::string peer_nic;   // the NIC on the receiver's side it wants to reach
  ibv_gid gid{};
  uint16_t lid = 0;
  uint32_t psn = 0;
  std::vector<uint32_t> qp_nums;
  uint64_t instance = 0;  // the sender's process (RdmaOptions::instance); 0 = unknown
};

std::string EndpointInfoToJson(const EndpointInfo& info);
absl::StatusOr<EndpointInfo> ParseEndpointInfo(absl::string_view json);

// RdmaHandshake carries EndpointInfo to the peer's RdmaTransport::Accept and brings back its answer
// (over the TCP control connection in production, directly in the simulator).
class RdmaHandshake {
 public:
  virtual ~RdmaHandshake() = default;
  virtual absl::StatusOr<EndpointInfo> Exchange(const std::string& peer_segment,
                                                const EndpointInfo& mine) = 0;
};

class RdmaTransport {
 public:
  // `verbs`, `clock`, `handshake` and `executor` (may be null) must outlive the transport.
  RdmaTransport(Verbs* verbs, Clock* clock, RdmaHandshake* handshake, std::string segment_name,
                RdmaOptions options, Executor* executor = nullptr);
  ~RdmaTransport();
  RdmaTransport(const RdmaTransport&) = delete;
  RdmaTransport& operator=(const RdmaTransport&) = delete;

  // Init opens every device in options.devices, with a PD and a CQ each.
  absl::Status Init();

  // RegisterMemory registers [addr, addr + length) with every device, in chunks of at most the
  // devices' MR limit. UnregisterMemory deregisters the region that starts at addr.
  absl::Status RegisterMemory(uint64_t addr, uint64_t length, bool remote_accessible,
                              const std::string& location = "cpu:0");
  absl::Status UnregisterMemory(uint64_t addr);

  // FillDescriptor adds this transport's devices, priority matrix and registered buffers (one entry
  // per MR chunk, with one rkey per device) to `desc`.
  void FillDescriptor(SegmentDescriptor* desc) const;

  // Accept answers a peer's handshake: creates QPs on the requested local NIC and connects them.
  absl::StatusOr<EndpointInfo> Accept(const EndpointInfo& remote);

  // Submit queues request `request` of `batch`. `peer` is the remote segment's descriptor; the
  // remote range must lie inside its buffers (checked here; the NIC checks again).
  void Submit(const std::shared_ptr<TransferBatch>& batch, size_t request, bool is_write,
              uint64_t local_addr, uint64_t remote_addr, uint64_t length,
              const std::shared_ptr<const SegmentDescriptor>& peer);

  // Poll makes progress; returns how many slices it posted or finished (0 = idle).
  int Poll();

  // Idle is true when no slice is waiting or in flight.
  bool Idle() const;

  struct RailStats {
    std::string local_nic, remote_nic;
    uint64_t bytes = 0;
    uint64_t slices = 0;
    uint64_t failures = 0;
    bool paused = false;
  };
  // Stats per rail to `peer_segment`, for tests and benchmarks.
  std::vector<RailStats> Stats(const std::string& peer_segment) const;

  // ForgetPeer tears down the rails to `peer_segment` if nothing of it is queued, in flight or
  // connecting; true if it is gone.
  bool ForgetPeer(const std::string& peer_segment);
  // AcceptedPeers lists the (segment, instance) of every peer with endpoints accepted here.
  std::vector<std::pair<std::string, uint64_t>> AcceptedPeers() const;
  // DropAccepted destroys the endpoints a peer process (instance 0: any) connected to us.
  void DropAccepted(const std::string& peer_segment, uint64_t instance);
  // Fence destroys every endpoint peers connected to us, so nothing posted on them lands any more,
  // and answers handshakes with `instance` from now on: a peer's request described for the old
  // instance is refused when it reconnects (TransferEngine::FenceInbound).
  void Fence(uint64_t instance);
  size_t num_peers() const;
  size_t num_accepted() const;

 private:
  struct Device;
  struct Rail;
  struct Peer;
  struct Slice;
  struct Region;

  struct Accepted;
  absl::StatusOr<Peer*> GetPeerLocked(const std::shared_ptr<const SegmentDescriptor>& desc)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // StartConnectLocked creates the rail's QPs and runs its handshake: on the executor (the rail
  // stays `connecting` until FinishConnectLocked), or inline without one. Returns the inline result
  // (OK while connecting in the background).
  absl::Status StartConnectLocked(Peer* peer, size_t rail_index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FinishConnectLocked(const std::string& peer_name, size_t rail_index, uint64_t seq,
                                   std::vector<ibv_qp*> qps, uint32_t psn,
                                   const absl::StatusOr<EndpointInfo>& theirs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ChargeWaitingLocked counts one failed try against every slice waiting for `peer` (its rails
  // could not be connected), failing those out of tries.
  void ChargeWaitingLocked(Peer* peer, const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FailOtherIncarnationLocked fails every waiting slice of `peer` submitted for another process
  // than `instance` (the peer restarted).
  void FailOtherIncarnationLocked(Peer* peer, uint64_t instance, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<ibv_qp*>> CreateQps(Device* dev, int count);
  absl::Status ConnectQps(Device* dev, const std::vector<ibv_qp*>& qps, const EndpointInfo& remote,
                          uint32_t local_psn);
  void TearDownLocked(Rail* rail) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A finished request or slice, delivered to its batch once mu_ is released (a batch's completion
  // callback may submit again).
  struct Completion {
    std::shared_ptr<TransferBatch> batch;
    size_t request;
    absl::Status status;
    bool slice;  // SliceDone; else Finish (a request that got no slices)
  };
  static void Deliver(std::vector<Completion>* done);
  void SubmitLocked(const std::shared_ptr<TransferBatch>& batch, size_t request, bool is_write,
                    uint64_t local_addr, uint64_t remote_addr, uint64_t length,
                    const std::shared_ptr<const SegmentDescriptor>& peer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int PollLocked(std::vector<Completion>* done);
  enum class PostResult { kPosted, kFinished, kNoRoom, kFailed };
  // TryPostLocked posts one waiting slice on the first rail of its peer with room.
  PostResult TryPostLocked(Peer* peer, uint32_t slot, int64_t now, absl::Status* error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteLocked(const ibv_wc& wc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetryOrFailLocked(uint32_t slot, const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(uint32_t slot, const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PauseRailLocked(Rail* rail) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const ibv_mr* LocalMrLocked(uint64_t addr, uint64_t length, int device, uint64_t* chunk_end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Verbs* const verbs_;
  Clock* const clock_;
  RdmaHandshake* const handshake_;
  const std::string segment_name_;
  const RdmaOptions options_;
  Executor* const executor_;
  // Handshakes running on the executor check it before touching the transport.
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Device>> devices_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::unique_ptr<Region>> regions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  // Responder-side QPs, by (peer segment, peer NIC, local NIC).
  std::map<std::string, Accepted> accepted_ ABSL_GUARDED_BY(mu_);
  uint64_t instance_ ABSL_GUARDED_BY(mu_);  // in our handshakes; options_.instance until a Fence
  std::vector<Slice> slots_ ABSL_GUARDED_BY(mu_);  // wr_id indexes this
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(mu_);
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Completion> completions_ ABSL_GUARDED_BY(mu_);
  uint32_t next_psn_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_RDMA_RDMA_TRANSPORT_H_
