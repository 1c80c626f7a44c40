#include "mooncake/store/replica_cache.h"

#include "gtest/gtest.h"

namespace mooncake {
namespace {

ObjectReplicas Replicas(uint64_t address) {
  ObjectReplicas r;
  r.size = 4096;
  r.replicas.push_back(ReplicaDesc{"host:1", address, 4096, 7});
  return r;
}

TEST(ReplicaCacheTest, ServesOneReadWithinHalfTheLease) {
  ReplicaCache cache(16);
  cache.Put("a", Replicas(100), /*lease_start_ns=*/1000, absl::Nanoseconds(1000));
  std::optional<ReplicaCache::Entry> e = cache.Take("a", 1400);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->replicas.replicas[0].address, 100u);
  EXPECT_EQ(e->lease_start_ns, 1000);
  EXPECT_EQ(e->lease_ns, 1000);
  EXPECT_FALSE(cache.Take("a", 1400).has_value());  // taken: the next read asks the master
  EXPECT_FALSE(cache.Take("never", 0).has_value());
}

TEST(ReplicaCacheTest, RefusesAnEntryPastHalfItsLease) {
  ReplicaCache cache(16);
  cache.Put("a", Replicas(100), 1000, absl::Nanoseconds(1000));
  EXPECT_FALSE(cache.Take("a", 1501).has_value());
  EXPECT_EQ(cache.size(), 0u);
}

TEST(ReplicaCacheTest, RefusesAnEntryOlderThanMaxAge) {
  ReplicaCache cache(16, absl::Milliseconds(500));
  const int64_t t0 = 1'000'000'000;
  cache.Put("a", Replicas(100), t0, absl::Seconds(10));
  cache.Put("b", Replicas(200), t0, absl::Seconds(10));
  EXPECT_TRUE(cache.Take("a", t0 + 499'000'000).has_value());
  EXPECT_FALSE(cache.Take("b", t0 + 501'000'000).has_value());
}

TEST(ReplicaCacheTest, ANewerListReplacesTheOlder) {
  ReplicaCache cache(16);
  cache.Put("a", Replicas(100), 1000, absl::Nanoseconds(1000));
  cache.Put("a", Replicas(200), 5000, absl::Nanoseconds(1000));
  std::optional<ReplicaCache::Entry> e = cache.Take("a", 5100);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->replicas.replicas[0].address, 200u);
}

TEST(ReplicaCacheTest, StaysWithinCapacityDroppingTheOldest) {
  ReplicaCache cache(3);
  for (int i = 0; i < 10; ++i) {
    cache.Put("k" + std::to_string(i), Replicas(i), 0, absl::Seconds(1));
  }
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.Take("k6", 0).has_value());
  EXPECT_TRUE(cache.Take("k7", 0).has_value());
  EXPECT_TRUE(cache.Take("k9", 0).has_value());
  // Re-putting one key many times does not grow the bookkeeping without bound.
  for (int i = 0; i < 100; ++i) cache.Put("same", Replicas(i), 0, absl::Seconds(1));
  EXPECT_LE(cache.size(), 3u);
  EXPECT_TRUE(cache.Take("same", 0).has_value());
}

TEST(ReplicaCacheTest, EraseAndClearForget) {
  ReplicaCache cache(16);
  cache.Put("a", Replicas(1), 0, absl::Seconds(1));
  cache.Put("b", Replicas(2), 0, absl::Seconds(1));
  cache.Erase(std::vector<std::string>{"a"});
  EXPECT_FALSE(cache.Take("a", 0).has_value());
  cache.Put("c", Replicas(3), 0, absl::Seconds(1));
  cache.Clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.Take("b", 0).has_value());
  cache.Put("d", Replicas(4), 0, absl::Seconds(1));
  EXPECT_TRUE(cache.Take("d", 0).has_value());
}

TEST(ReplicaCacheTest, CapacityZeroKeepsNothing) {
  ReplicaCache cache(0);
  cache.Put("a", Replicas(1), 0, absl::Seconds(1));
  EXPECT_FALSE(cache.Take("a", 0).has_value());
}

}  // namespace
}  // namespace mooncake
