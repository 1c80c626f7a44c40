#include "sim/sim_data_path.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"

namespace sim {

using mooncake::ErrorCode;
using mooncake::MakeError;

SimDataPath::SimDataPath(Simulator* sim, mooncake::RdmaTransport* transport, std::string segment,
                         HostId host, const SegmentDirectory* directory, std::weak_ptr<bool> alive,
                         const SimDataPathOptions& options)
    : sim_(sim),
      transport_(transport),
      segment_(std::move(segment)),
      host_(host),
      directory_(directory),
      alive_(std::move(alive)),
      options_(options) {}

int SimDataPath::Closeness(const std::string& segment) {
  if (segment == segment_) return 0;
  auto it = directory_->find(segment);
  if (it == directory_->end()) return 3;
  return it->second.host == host_ ? 1 : 2;
}

void SimDataPath::Transfer(std::vector<mooncake::DataRequest> requests,
                           std::function<void(std::vector<absl::Status>)> done) {
  auto p = std::make_shared<Pending>();
  p->results.resize(requests.size());
  p->done = std::move(done);
  std::vector<size_t> rdma;
  std::vector<std::shared_ptr<const mooncake::SegmentDescriptor>> rdma_desc;
  for (size_t i = 0; i < requests.size(); ++i) {
    const mooncake::DataRequest& r = requests[i];
    auto it = directory_->find(r.segment);
    if (it == directory_->end()) {
      p->results[i] = MakeError(ErrorCode::SEGMENT_NOT_FOUND, absl::StrCat("segment ", r.segment));
      continue;
    }
    const DirectoryEntry& e = it->second;
    if (r.instance != 0 && e.descriptor->instance != r.instance) {
      p->results[i] =
          MakeError(ErrorCode::INVALID_REPLICA, absl::StrCat("segment ", r.segment,
                                                             " restarted since the replica "
                                                             "was placed; its bytes are gone"));
      continue;
    }
    if (e.descriptor->FindBuffer(r.remote, r.length) == nullptr) {
      p->results[i] =
          MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("range outside segment ", r.segment));
      continue;
    }
    if (e.host != host_) {
      rdma.push_back(i);
      rdma_desc.push_back(e.descriptor);
      continue;
    }
    // Same host: a memory copy, done (bytes moved) when it completes.
    ++p->local_copies_left;
    const SimTime t = static_cast<SimTime>(static_cast<double>(r.length) * 1e9 /
                                           options_.local_copy_bytes_per_second);
    std::weak_ptr<bool> alive = alive_;
    sim_->Schedule(t, "copy.local", [this, p, r, alive] {
      if (alive.expired()) return;
      char* remote = reinterpret_cast<char*>(r.remote);
      if (r.write) {
        std::memcpy(remote, r.local, r.length);
      } else {
        std::memcpy(r.local, remote, r.length);
      }
      bytes_moved_ += r.length;
      --p->local_copies_left;
      Finish();
    });
  }
  if (!rdma.empty()) {
    p->batch = std::make_shared<mooncake::TransferBatch>(rdma.size());
    p->rdma_index = rdma;
    for (size_t k = 0; k < rdma.size(); ++k) {
      const mooncake::DataRequest& r = requests[rdma[k]];
      p->rdma_length.push_back(r.length);
      transport_->Submit(p->batch, k, r.write, reinterpret_cast<uint64_t>(r.local), r.remote,
                         r.length, rdma_desc[k]);
    }
  }
  pending_.push_back(std::move(p));
  if (rdma.empty()) {
    // Only local copies (or none): their events, or this one, finish the transfer.
    std::weak_ptr<bool> alive = alive_;
    sim_->Schedule(0, "copy.check", [this, alive] {
      if (!alive.expired()) Finish();
    });
  } else {
    EnsurePolling();
  }
}

void SimDataPath::Finish() {
  for (size_t i = 0; i < pending_.size();) {
    std::shared_ptr<Pending> p = pending_[i];
    const bool rdma_done = p->batch == nullptr || p->batch->Done();
    if (p->local_copies_left > 0 || !rdma_done) {
      ++i;
      continue;
    }
    pending_.erase(pending_.begin() + static_cast<ptrdiff_t>(i));
    if (p->batch != nullptr) {
      for (size_t k = 0; k < p->rdma_index.size(); ++k) {
        absl::Status s = p->batch->status(k);
        if (s.ok()) bytes_moved_ += p->rdma_length[k];
        p->results[p->rdma_index[k]] = s;
      }
    }
    p->done(std::move(p->results));  // may start new transfers (appended to pending_)
  }
}

bool SimDataPath::PollOnce() {
  transport_->Poll();
  Finish();
  const bool busy = !transport_->Idle() || !pending_.empty();
  if (!busy) polling_ = false;
  return busy;
}

void SimDataPath::EnsurePolling() {
  if (polling_) return;
  polling_ = true;
  std::weak_ptr<bool> alive = alive_;
  sim_->ScheduleRepeating(options_.poll_period, "poll", [this, alive] {
    if (alive.expired()) return false;
    return PollOnce();
  });
}

}  // namespace sim
