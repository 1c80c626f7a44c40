// EngineDataPath: the production DataPath, over a TransferEngine (memcpy, shared memory, TCP or
// RDMA, whichever route the engine picked for each segment). Transfer runs synchronously and calls
// `done` before it returns.
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
  explicit EngineDataPath(TransferEngine* engine) : engine_(engine) {}
  const std::string& local_segment() const override { return engine_->segment_name(); }
  int Closeness(const std::string& segment) override;
  void Transfer(std::vector<DataRequest> requests,
                std::function<void(std::vector<absl::Status>)> done) override;

 private:
  TransferEngine* const engine_;
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_ENGINE_DATA_PATH_H_
