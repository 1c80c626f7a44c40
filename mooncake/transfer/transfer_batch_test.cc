#include "mooncake/transfer/transfer_batch.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(TransferBatchTest, RequestDoneWhenAllSlicesAreAndFirstErrorWins) {
  TransferBatch b(2);
  b.AddSlices(0, 3);
  b.Finish(1, absl::OkStatus());
  EXPECT_FALSE(b.Done());
  EXPECT_EQ(b.status(0).code(), absl::StatusCode::kUnavailable);  // pending
  b.SliceDone(0, absl::OkStatus());
  b.SliceDone(0, absl::InternalError("first"));
  EXPECT_FALSE(b.Wait(absl::Milliseconds(1)));
  b.SliceDone(0, absl::InternalError("second"));
  EXPECT_TRUE(b.Wait(absl::ZeroDuration()));
  EXPECT_EQ(b.status(0).message(), "first");
  EXPECT_TRUE(b.status(1).ok());
}

TEST(TransferBatchTest, WaitWakesWhenSlicesCompleteOnOtherThreads) {
  TransferBatch b(8);
  for (int i = 0; i < 8; ++i) b.AddSlices(i, 100);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&b, t] {
      for (int i = 2 * t; i < 2 * t + 2; ++i) {
        for (int s = 0; s < 100; ++s) b.SliceDone(i, absl::OkStatus());
      }
    });
  }
  EXPECT_TRUE(b.Wait(absl::Seconds(10)));
  for (auto& t : threads) t.join();
  for (const absl::Status& s : b.statuses()) EXPECT_TRUE(s.ok());
}

TEST(TransferBatchDeathTest, ASliceCannotCompleteTwice) {
  TransferBatch b(1);
  b.AddSlices(0, 1);
  b.SliceDone(0, absl::OkStatus());
  EXPECT_DEATH(b.SliceDone(0, absl::OkStatus()), "completed twice");
}

}  // namespace
}  // namespace mooncake
