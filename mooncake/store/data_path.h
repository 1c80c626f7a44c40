// DataPath: how the store's core moves object bytes between caller buffers and replicas. The one
// implementation is EngineDataPath, over a TransferEngine: in production with real transports, in
// the simulator with the engine's RDMA route on simulated verbs.
//
//   data->Transfer({{/*write=*/true, buf, "10.0.0.2:15001", remote_addr, len}},
//                  [](std::vector<absl::Status> per_request) { ... });
//
// Contract: `done` runs exactly once, with one status per request, after no request will touch its
// local or remote range again. It may run before Transfer returns.
#ifndef MOONCAKE_STORE_DATA_PATH_H_
#define MOONCAKE_STORE_DATA_PATH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace mooncake {

struct DataRequest {
  bool write = false;  // true: local -> remote; false: remote -> local
  void* local = nullptr;
  std::string segment;  // the replica's segment name
  uint64_t remote = 0;
  uint64_t length = 0;
  uint64_t instance = 0;  // the segment's process the replica belongs to; 0 = unchecked
  // Set for a read of an object's SSD-tier copy (a disk replica): the process serving `segment`
  // reads it from its disk, and `remote` is the offset in the object.
  std::string disk_key;
};

class DataPath {
 public:
  virtual ~DataPath() = default;
  // local_segment is the name of this client's own segment.
  virtual const std::string& local_segment() const = 0;
  // Closeness ranks a segment for reading: 0 own segment, 1 same host, 2 network, 3 unreachable.
  virtual int Closeness(const std::string& segment) = 0;
  virtual void Transfer(std::vector<DataRequest> requests,
                        std::function<void(std::vector<absl::Status>)> done) = 0;
  // FenceInbound makes sure no write that reached this client's segment before the call lands in
  // it afterwards (a remount hands the whole segment out again). Returns the instance to mount the
  // segment with from now on (0: unchanged): writes described for the old one are refused.
  virtual uint64_t FenceInbound() { return 0; }
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_DATA_PATH_H_
