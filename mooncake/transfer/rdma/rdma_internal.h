// The RdmaTransport's private state, shared by its control path (rdma_connection.cc) and its data
// path (rdma_transport.cc). Everything here is guarded by RdmaTransport::mu_.
#ifndef MOONCAKE_TRANSFER_RDMA_RDMA_INTERNAL_H_
#define MOONCAKE_TRANSFER_RDMA_RDMA_INTERNAL_H_

#include <infiniband/verbs.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "mooncake/transfer/rdma/rdma_transport.h"

namespace mooncake {
namespace rdma_internal {

std::string GidToString(const ibv_gid& gid);
bool GidFromString(absl::string_view s, ibv_gid* gid);
// The transport does not link libibverbs (the simulator provides the Verbs), so it names completion
// statuses itself rather than calling ibv_wc_status_str.
const char* WcStatusName(ibv_wc_status status);
absl::Status TransferFail(absl::string_view why);
// MtuFromBytes is the ibv_mtu of 256..4096 bytes, or 0 for any other value.
ibv_mtu MtuFromBytes(int bytes);

}  // namespace rdma_internal

struct RdmaTransport::Device {
  std::string name;
  ibv_context* context = nullptr;
  ibv_pd* pd = nullptr;
  ibv_cq* cq = nullptr;
  ibv_gid gid{};
  uint16_t lid = 0;
  ibv_mtu mtu = IBV_MTU_4096;
  uint64_t max_mr_size = 0;
  int outstanding = 0;  // WRs posted and not yet completed, across all QPs (<= cq_entries)
};

struct RdmaTransport::Region {
  struct Chunk {
    uint64_t addr;
    uint64_t length;
    std::vector<ibv_mr*> mrs;  // one per device
  };
  uint64_t addr = 0;
  uint64_t length = 0;
  bool remote = false;
  std::string location;
  std::vector<Chunk> chunks;
};

struct RdmaTransport::Rail {
  int local_device = 0;
  int remote_device = 0;  // index in the peer descriptor's devices (selects the rkey)
  std::string remote_nic;
  std::vector<ibv_qp*> qps;
  std::vector<int> outstanding;  // per QP
  int total_outstanding = 0;
  size_t next_qp = 0;
  bool connected = false;
  bool connecting = false;
  uint64_t connect_seq = 0;  // names the handshake in progress; a stale answer is dropped
  bool broken = false;       // a QP hit an error: tear down once drained, reconnect on next use
  int64_t paused_until = 0;  // nanos; 0 = not paused. Once expired, one probe slice at a time.
  RailStats stats;
};

struct RdmaTransport::Peer {
  std::string name;
  std::shared_ptr<const SegmentDescriptor> desc;
  std::vector<std::unique_ptr<Rail>> rails;
  size_t next_rail = 0;
  std::deque<uint32_t> waiting;  // slots not yet posted, FIFO
};

struct RdmaTransport::Slice {
  std::shared_ptr<TransferBatch> batch;
  size_t request = 0;
  bool write = false;
  uint64_t local = 0;
  uint64_t remote = 0;
  uint64_t length = 0;
  Peer* peer = nullptr;
  // The peer process the slice was submitted for (SegmentDescriptor::instance; 0 = unknown). A
  // retry never goes to a later incarnation of the peer: its memory holds other objects now.
  uint64_t instance = 0;
  Rail* rail = nullptr;
  size_t qp = 0;
  int attempts = 0;
};

// Endpoints a peer connected to us on one (peer NIC, local NIC) pair.
struct RdmaTransport::Accepted {
  std::string segment;
  uint64_t instance = 0;
  std::vector<ibv_qp*> qps;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_RDMA_RDMA_INTERNAL_H_
