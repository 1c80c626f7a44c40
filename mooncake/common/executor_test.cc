#include "mooncake/common/executor.h"

#include <atomic>
#include <set>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(ThreadPoolExecutorTest, RunsEveryTaskOnceOnPoolThreads) {
  std::atomic<int> runs{0};
  std::set<std::thread::id> ids;
  absl::Mutex mu;
  {
    ThreadPoolExecutor pool(3);
    for (int i = 0; i < 1000; ++i) {
      pool.Schedule([&] {
        runs++;
        absl::MutexLock lock(&mu);
        ids.insert(std::this_thread::get_id());
      });
    }
  }  // destruction drains the queue
  EXPECT_EQ(runs.load(), 1000);
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 0u);
  EXPECT_LE(ids.size(), 3u);
}

TEST(ThreadPoolExecutorTest, WorkCanScheduleMoreWork) {
  ThreadPoolExecutor pool(1);
  absl::Notification done;
  pool.Schedule([&] { pool.Schedule([&] { done.Notify(); }); });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
}

}  // namespace
}  // namespace mooncake
