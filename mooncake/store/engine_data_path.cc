#include "mooncake/store/engine_data_path.h"

#include <utility>

namespace mooncake {

int EngineDataPath::Closeness(const std::string& segment) {
  if (segment == engine_->segment_name()) return 0;
  auto id = engine_->OpenSegment(segment);
  if (!id.ok()) return 3;
  auto route = engine_->RouteTo(*id);
  if (route.ok() &&
      (*route == TransferEngine::Route::kShm || *route == TransferEngine::Route::kLocal)) {
    return 1;
  }
  return 2;
}

void EngineDataPath::Transfer(std::vector<DataRequest> requests,
                              std::function<void(std::vector<absl::Status>)> done) {
  std::vector<absl::Status> results(requests.size());
  std::vector<TransferRequest> reqs;
  std::vector<size_t> index;  // position in `requests` of each entry of `reqs`
  reqs.reserve(requests.size());
  const std::string* last_name = nullptr;
  absl::StatusOr<SegmentId> last_id = SegmentId{0};
  for (size_t i = 0; i < requests.size(); ++i) {
    const DataRequest& r = requests[i];
    // Batches name few segments, usually in runs: resolve each run once.
    if (last_name == nullptr || *last_name != r.segment) {
      last_id = engine_->OpenSegment(r.segment);
      last_name = &r.segment;
    }
    if (!last_id.ok()) {
      results[i] = last_id.status();
      continue;
    }
    reqs.push_back({r.write ? TransferRequest::Opcode::kWrite : TransferRequest::Opcode::kRead,
                    r.local, *last_id, r.remote, r.length, r.instance});
    index.push_back(i);
  }
  if (!reqs.empty()) {
    std::vector<absl::Status> moved = engine_->Transfer(reqs);
    for (size_t k = 0; k < index.size(); ++k) results[index[k]] = std::move(moved[k]);
  }
  done(std::move(results));
}

}  // namespace mooncake
