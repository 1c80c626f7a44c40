// PeerControl: the TransferEngine's control channel to other engines, for the rare requests that
// are not data: fetching a peer's segment descriptor (P2PHANDSHAKE mode, liveness probes) and the
// RDMA rail handshake. Production sends control frames to the peer's TCP data server on a fresh
// connection; the simulator calls the peer engine directly (its seam, docs/architecture.md, "Layers
// and seams").
#ifndef MOONCAKE_TRANSFER_PEER_CONTROL_H_
#define MOONCAKE_TRANSFER_PEER_CONTROL_H_

#include <string>

#include "absl/status/statusor.h"
#include "mooncake/transfer/rdma/rdma_transport.h"

namespace mooncake {

class PeerControl : public RdmaHandshake {
 public:
  // GetDescriptor asks the engine serving `segment` for its descriptor (JSON). SEGMENT_NOT_FOUND
  // when nothing answers there (the process is gone); other errors when it cannot be told.
  virtual absl::StatusOr<std::string> GetDescriptor(const std::string& segment) = 0;
  // Exchange (RdmaHandshake) carries one rail handshake to the peer and brings back its answer.

  // CallService carries one request to the service handler of the engine serving `segment`
  // (TransferEngine::SetServiceHandler) and brings back its reply.
  virtual absl::StatusOr<std::string> CallService(const std::string& segment,
                                                  const std::string& request) = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_PEER_CONTROL_H_
