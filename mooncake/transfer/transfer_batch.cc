#include "mooncake/transfer/transfer_batch.h"

#include <utility>

#include "mooncake/common/logging.h"

namespace mooncake {

TransferBatch::TransferBatch(size_t num_requests, Callback on_done)
    : tasks_(num_requests), pending_(num_requests), on_done_(std::move(on_done)) {}

bool TransferBatch::Wait(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto all_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&all_done), timeout);
}

bool TransferBatch::Done() const {
  absl::MutexLock lock(&mu_);
  return pending_ == 0;
}

absl::Status TransferBatch::status(size_t i) const {
  absl::MutexLock lock(&mu_);
  if (i >= tasks_.size()) return absl::OutOfRangeError("no such request in batch");
  if (!tasks_[i].done) return absl::UnavailableError("pending");
  return tasks_[i].status;
}

std::vector<absl::Status> TransferBatch::statuses() const {
  absl::MutexLock lock(&mu_);
  std::vector<absl::Status> out;
  out.reserve(tasks_.size());
  for (const Task& t : tasks_) {
    out.push_back(t.done ? t.status : absl::UnavailableError("pending"));
  }
  return out;
}

void TransferBatch::RunCallbackIfEmpty() {
  Callback done;
  {
    absl::MutexLock lock(&mu_);
    if (!tasks_.empty()) return;
    done = std::move(on_done_);
  }
  if (done) done(*this);
}

void TransferBatch::AddSlices(size_t i, int n) {
  absl::MutexLock lock(&mu_);
  MC_CHECK(!tasks_[i].done) << "slices added to a finished request";
  tasks_[i].remaining += n;
}

TransferBatch::Callback TransferBatch::FinishLocked(Task& task) {
  task.done = true;
  if (--pending_ != 0) return nullptr;
  return std::move(on_done_);
}

void TransferBatch::SliceDone(size_t i, const absl::Status& status) {
  Callback done;
  {
    absl::MutexLock lock(&mu_);
    Task& t = tasks_[i];
    MC_CHECK(t.remaining > 0 && !t.done) << "slice completed twice";
    if (!status.ok() &&
        (t.status.ok() || (IsUnsettledWrite(status) && !IsUnsettledWrite(t.status)))) {
      t.status = status;
    }
    if (--t.remaining == 0) done = FinishLocked(t);
  }
  if (done) done(*this);
}

void TransferBatch::Finish(size_t i, const absl::Status& status) {
  Callback done;
  {
    absl::MutexLock lock(&mu_);
    Task& t = tasks_[i];
    MC_CHECK(t.remaining == 0 && !t.done) << "Finish on a request with slices in flight";
    t.status = status;
    done = FinishLocked(t);
  }
  if (done) done(*this);
}

}  // namespace mooncake
