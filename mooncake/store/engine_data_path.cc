#include "mooncake/store/engine_data_path.h"

#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mooncake/store/disk_read_protocol.h"

namespace mooncake {
namespace {

// One service call: items and, per item, the request it fills and where.
struct DiskChunk {
  std::string segment;
  std::vector<DiskReadItem> items;
  std::vector<std::pair<size_t, char*>> targets;
  uint64_t bytes = 0;
};

// A piece of one request longer than this is asked for in several items.
constexpr uint64_t kMaxDiskItem = 8ull << 20;
// One service call asks for about this much: small enough that several calls of one batch are
// in flight at once (the holder's disk reads of one overlap the transfer of another), large
// enough to amortize the call.
constexpr uint64_t kDiskChunkBytes = 8ull << 20;
static_assert(kDiskChunkBytes <= kMaxDiskReadReply, "a chunk must fit one reply");
// Chunks in flight at once for one batch.
constexpr size_t kDiskReadParallelism = 4;

// Runs one call; returns a status per item.
std::vector<absl::Status> RunChunk(TransferEngine* engine, const DiskChunk& chunk) {
  // The reply streams from the holder's socket straight into the callers' buffers.
  std::vector<ErrorCode> codes;
  absl::Status call = engine->CallServiceInto(
      chunk.segment, EncodeDiskReadRequest(chunk.items), [&](PeerControl::ReplyReader& reply) {
        if (reply.size() != DiskReadReplySize(chunk.items)) {
          return MakeError(ErrorCode::TRANSFER_FAIL, "malformed disk read reply");
        }
        // The bytes land in the callers' buffers as they come; a failed item's (zeros) land
        // there too, and its code below makes the result an error.
        for (size_t k = 0; k < chunk.items.size(); ++k) {
          if (absl::Status s = reply.Read(chunk.targets[k].second, chunk.items[k].length);
              !s.ok()) {
            return s;
          }
        }
        std::string trailer(DiskReadReplyTrailerSize(chunk.items.size()), '\0');
        if (absl::Status s = reply.Read(trailer.data(), trailer.size()); !s.ok()) return s;
        absl::StatusOr<std::vector<ErrorCode>> parsed =
            ParseDiskReadReplyTrailer(chunk.items, trailer);
        if (!parsed.ok()) return parsed.status();
        codes = std::move(*parsed);
        return absl::OkStatus();
      });
  std::vector<absl::Status> out(chunk.items.size());
  for (size_t k = 0; k < chunk.items.size(); ++k) {
    if (!call.ok()) {
      out[k] = call;
    } else if (codes[k] != ErrorCode::OK) {
      out[k] = MakeError(codes[k], absl::StrCat("disk read of '", chunk.items[k].key, "' from ",
                                                chunk.segment, " failed"));
    }
  }
  return out;
}

}  // namespace

void EngineDataPath::ReadDisk(const std::vector<DataRequest>& requests,
                              const std::vector<size_t>& disk, std::vector<absl::Status>* results) {
  std::map<std::string, std::vector<DiskChunk>> by_holder;
  for (size_t i : disk) {
    const DataRequest& r = requests[i];
    std::vector<DiskChunk>& chunks = by_holder[r.segment];
    for (uint64_t done = 0; done < r.length;) {
      const uint64_t n = std::min(kMaxDiskItem, r.length - done);
      if (chunks.empty() ||
          (chunks.back().bytes > 0 && chunks.back().bytes + n > kDiskChunkBytes) ||
          chunks.back().items.size() >= kMaxDiskReadItems) {
        chunks.emplace_back();
        chunks.back().segment = r.segment;
      }
      DiskChunk& c = chunks.back();
      c.items.push_back({r.disk_key, r.remote + done, n});
      c.targets.emplace_back(i, static_cast<char*>(r.local) + done);
      c.bytes += n;
      done += n;
    }
  }
  std::vector<const DiskChunk*> all;
  for (const auto& [holder, chunks] : by_holder) {
    for (const DiskChunk& c : chunks) all.push_back(&c);
  }
  // Each chunk's outcome has its own slot, so workers share nothing; a request split across
  // chunks keeps its first error.
  std::vector<std::vector<absl::Status>> outcome(all.size());
  const size_t workers = synchronous_ ? std::min(kDiskReadParallelism, all.size()) : 1;
  if (workers <= 1) {
    for (size_t k = 0; k < all.size(); ++k) outcome[k] = RunChunk(engine_, *all[k]);
  } else {
    std::vector<std::thread> threads;
    for (size_t w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        for (size_t k = w; k < all.size(); k += workers) outcome[k] = RunChunk(engine_, *all[k]);
      });
    }
    for (std::thread& t : threads) t.join();
  }
  for (size_t k = 0; k < all.size(); ++k) {
    for (size_t j = 0; j < outcome[k].size(); ++j) {
      absl::Status& slot = (*results)[all[k]->targets[j].first];
      if (!outcome[k][j].ok() && slot.ok()) slot = outcome[k][j];
    }
  }
}

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
  std::vector<size_t> disk;
  for (size_t i = 0; i < requests.size(); ++i) {
    const DataRequest& r = requests[i];
    if (!r.disk_key.empty()) {
      disk.push_back(i);
      continue;
    }
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
  if (!disk.empty()) ReadDisk(requests, disk, results.get());
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
