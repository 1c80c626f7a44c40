// EngineDataPath: the store's DataPath over a TransferEngine (memcpy, shared memory, TCP or RDMA,
// whichever route the engine picks for each segment).
//
// Synchronous (production): Transfer waits for the engine and calls `done` on the caller's
// thread before it returns, so store work never runs on the engine's own threads (the RDMA poller,
// TCP receivers). Asynchronous (the simulator): `done` runs when the engine finishes the batch,
// from whatever finished it.
#ifndef MOONCAKE_STORE_ENGINE_DATA_PATH_H_
#define MOONCAKE_STORE_ENGINE_DATA_PATH_H_

#include <string>
#include <vector>

#include "mooncake/store/data_path.h"
#include "mooncake/transfer/transfer_engine.h"

namespace mooncake {

class EngineDataPath final : public DataPath {
 public:
  // `engine` must outlive the data path.
  explicit EngineDataPath(TransferEngine* engine, bool synchronous = true)
      : engine_(engine), synchronous_(synchronous) {}
  const std::string& local_segment() const override { return engine_->segment_name(); }
  int Closeness(const std::string& segment) override;
  void Transfer(std::vector<DataRequest> requests,
                std::function<void(std::vector<absl::Status>)> done) override;
  uint64_t FenceInbound() override { return engine_->FenceInbound(); }

 private:
  // Reads the disk requests among `requests` (indices `disk`) from their holders' SSD tiers: one
  // service call per holder and reply-sized chunk, chunks in parallel.
  void ReadDisk(const std::vector<DataRequest>& requests, const std::vector<size_t>& disk,
                std::vector<absl::Status>* results);

  TransferEngine* const engine_;
  const bool synchronous_;
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_ENGINE_DATA_PATH_H_
