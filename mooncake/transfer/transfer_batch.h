// TransferBatch: the completion state of one submitted batch of TransferRequests.
//
// Each request may be cut into slices that complete independently, on any thread. A request is done
// when all its slices are; its status is the first error any slice reported (an unsettled write's
// error over any other), else OK. Every request completes exactly once; Wait() returns, and the
// optional completion callback runs, when all have.
#ifndef MOONCAKE_TRANSFER_TRANSFER_BATCH_H_
#define MOONCAKE_TRANSFER_TRANSFER_BATCH_H_

#include <cstddef>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/common/error_code.h"

namespace mooncake {

class TransferBatch {
 public:
  // Callback gets the finished batch.
  using Callback = std::function<void(const TransferBatch&)>;
  // `on_done` (optional) runs once every request is done, on the thread that finished the last one,
  // with no lock held.
  explicit TransferBatch(size_t num_requests, Callback on_done = nullptr);
  TransferBatch(const TransferBatch&) = delete;
  TransferBatch& operator=(const TransferBatch&) = delete;

  size_t size() const { return tasks_.size(); }

  // Wait blocks until every request is done or `timeout` passes; true if all are done.
  bool Wait(absl::Duration timeout = absl::InfiniteDuration()) const;
  bool Done() const;

  // Status of request i: OK, its error, or UNAVAILABLE("pending") while it runs.
  absl::Status status(size_t i) const;
  std::vector<absl::Status> statuses() const;

  // --- Used by the engine and transports. ---
  // RunCallbackIfEmpty runs the completion callback of a batch of no requests (which no request
  // can finish).
  void RunCallbackIfEmpty();
  // AddSlices announces `n` more slices of request i; call before any of them can complete.
  void AddSlices(size_t i, int n);
  // SliceDone records one finished slice of request i.
  void SliceDone(size_t i, const absl::Status& status);
  // Finish ends request i with `status` when it has no slices (failed validation, or copied
  // inline).
  void Finish(size_t i, const absl::Status& status);

 private:
  struct Task {
    int remaining = 0;
    bool done = false;
    absl::Status status;
  };
  // FinishLocked marks a task done; returns the completion callback if it was the last.
  Callback FinishLocked(Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<Task> tasks_ ABSL_GUARDED_BY(mu_);
  size_t pending_ ABSL_GUARDED_BY(mu_);
  Callback on_done_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TRANSFER_BATCH_H_
