// Executor: where asynchronous work runs (docs/architecture.md, "Layers and seams"). Production
// uses a ThreadPoolExecutor; the simulator supplies one that runs work as simulated events.
//
//   ThreadPoolExecutor pool(2);
//   pool.Schedule([] { DoWork(); });   // runs on one of the pool's threads
#ifndef MOONCAKE_COMMON_EXECUTOR_H_
#define MOONCAKE_COMMON_EXECUTOR_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace mooncake {

class Executor {
 public:
  virtual ~Executor() = default;
  // Schedule runs `fn` later, exactly once (unless the executor is destroyed first, in which case
  // queued work still runs before destruction completes).
  virtual void Schedule(std::function<void()> fn) = 0;
};

// ThreadPoolExecutor runs work on a fixed set of threads, in FIFO order of scheduling.
class ThreadPoolExecutor final : public Executor {
 public:
  explicit ThreadPoolExecutor(int threads);
  // Drains the queue, then joins the threads.
  ~ThreadPoolExecutor() override;
  void Schedule(std::function<void()> fn) override;

 private:
  void Loop();
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace mooncake

#endif  // MOONCAKE_COMMON_EXECUTOR_H_
