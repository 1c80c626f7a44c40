#include "mooncake/store/engine_data_path.h"

#include <memory>
#include <utility>

namespace mooncake {

int EngineDataPath::Closeness(const std::string& segment) {
  if (segment == engine_->segment_name()) return 0;
  if (!engine_->OpenSegment(segment).ok()) return 3;
  return engine_->SameHost(segment) ? 1 : 2;
}

void EngineDataPath::Transfer(std::vector<DataRequest> requests,
                              std::function<void(std::vector<absl::Status>)> done) {
  auto results = std::make_shared<std::vector<absl::Status>>(requests.size());
  std::vector<TransferRequest> reqs;
  auto index = std::make_shared<std::vector<size_t>>();  // position in `requests` of each entry
  reqs.reserve(requests.size());
  index->reserve(requests.size());
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
      (*results)[i] = last_id.status();
      continue;
    }
    reqs.push_back({r.write ? TransferRequest::Opcode::kWrite : TransferRequest::Opcode::kRead,
                    r.local, *last_id, r.remote, r.length, r.instance});
    index->push_back(i);
  }
  if (reqs.empty()) {
    done(std::move(*results));
    return;
  }
  if (synchronous_) {
    std::vector<absl::Status> moved = engine_->Transfer(reqs);
    for (size_t k = 0; k < index->size(); ++k) (*results)[(*index)[k]] = std::move(moved[k]);
    done(std::move(*results));
    return;
  }
  engine_->Submit(reqs, [results, index, done = std::move(done)](const TransferBatch& batch) {
    std::vector<absl::Status> moved = batch.statuses();
    for (size_t k = 0; k < index->size(); ++k) (*results)[(*index)[k]] = std::move(moved[k]);
    done(std::move(*results));
  });
}

}  // namespace mooncake
