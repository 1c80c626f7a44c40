// SimDataPath: the store core's DataPath inside the simulator. Requests to segments on other hosts
// go through the production RdmaTransport on SimVerbs (slicing, striping over the host's NICs,
// retries, rail failover); requests to segments on the same host are copies at memory speed, as
// the engine's local and shared-memory routes are. Every remote range is checked against the
// target's published descriptor.
//
// Segment names resolve through a SegmentDirectory, the simulation's metadata service: each
// client publishes its descriptor there when it starts. A crashed client's entry stays until its
// restart replaces it, so requests to it really travel and fail on the network.
#ifndef SIM_SIM_DATA_PATH_H_
#define SIM_SIM_DATA_PATH_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mooncake/store/data_path.h"
#include "mooncake/transfer/rdma/rdma_transport.h"
#include "mooncake/transfer/transfer_batch.h"
#include "sim/network.h"
#include "sim/simulator.h"

namespace sim {

struct DirectoryEntry {
  HostId host = kNoId;
  std::shared_ptr<const mooncake::SegmentDescriptor> descriptor;
};

// SegmentDirectory maps segment names to their latest published descriptor.
using SegmentDirectory = std::map<std::string, DirectoryEntry>;

struct SimDataPathOptions {
  double local_copy_bytes_per_second = 10e9;  // same-host copies
  SimTime poll_period = 4 * kMicrosecond;     // transport Poll() while work is in flight
};

class SimDataPath final : public mooncake::DataPath {
 public:
  // Every pointer must outlive the data path; `alive` is the owning client's life.
  SimDataPath(Simulator* sim, mooncake::RdmaTransport* transport, std::string segment, HostId host,
              const SegmentDirectory* directory, std::weak_ptr<bool> alive,
              const SimDataPathOptions& options);

  const std::string& local_segment() const override { return segment_; }
  int Closeness(const std::string& segment) override;
  void Transfer(std::vector<mooncake::DataRequest> requests,
                std::function<void(std::vector<absl::Status>)> done) override;

  uint64_t bytes_moved() const { return bytes_moved_; }

 private:
  struct Pending {
    std::shared_ptr<mooncake::TransferBatch> batch;  // the RDMA part, may be null
    std::vector<size_t> rdma_index;                  // request index of each batch entry
    std::vector<uint64_t> rdma_length;
    std::vector<absl::Status> results;
    int local_copies_left = 0;
    std::function<void(std::vector<absl::Status>)> done;
  };
  // Polls the transport and completes finished transfers; false when nothing is left to do.
  bool PollOnce();
  void EnsurePolling();
  // Finish runs `done` for pending transfers whose parts all finished.
  void Finish();

  Simulator* const sim_;
  mooncake::RdmaTransport* const transport_;
  const std::string segment_;
  const HostId host_;
  const SegmentDirectory* const directory_;
  const std::weak_ptr<bool> alive_;
  const SimDataPathOptions options_;
  std::vector<std::shared_ptr<Pending>> pending_;
  bool polling_ = false;
  uint64_t bytes_moved_ = 0;
};

}  // namespace sim

#endif  // SIM_SIM_DATA_PATH_H_
