#include "mooncake/master/segment_allocator.h"

#include <map>
#include <vector>

#include "gtest/gtest.h"
#include "mooncake/common/rng.h"

namespace mooncake {
namespace {

TEST(SegmentAllocatorTest, FreshAllocatorIsOneFreeExtent) {
  SegmentAllocator alloc(1 << 20);
  EXPECT_EQ(alloc.capacity(), 1u << 20);
  EXPECT_EQ(alloc.allocated(), 0u);
  EXPECT_EQ(alloc.free_bytes(), 1u << 20);
  EXPECT_EQ(alloc.largest_free_extent(), 1u << 20);
  EXPECT_EQ(alloc.num_free_extents(), 1u);
  EXPECT_TRUE(alloc.CheckInvariants().ok());
}

TEST(SegmentAllocatorTest, BlocksAreAlignedAndPackedFromTheFront) {
  SegmentAllocator alloc(1 << 20);
  auto a = alloc.Allocate(100);
  auto b = alloc.Allocate(1);
  auto c = alloc.Allocate(64);
  ASSERT_TRUE(a.has_value() && b.has_value() && c.has_value());
  EXPECT_EQ(*a, 0u);
  EXPECT_EQ(*b, 128u);  // 100 rounds up to 128
  EXPECT_EQ(*c, 192u);
  EXPECT_EQ(alloc.allocated(), 256u);
  EXPECT_TRUE(alloc.CheckInvariants().ok());
}

TEST(SegmentAllocatorTest, ZeroAndOverflowingSizesFail) {
  SegmentAllocator alloc(1 << 20);
  EXPECT_FALSE(alloc.Allocate(0).has_value());
  EXPECT_FALSE(alloc.Allocate(UINT64_MAX).has_value());
  EXPECT_FALSE(alloc.Allocate((1 << 20) + 1).has_value());
  EXPECT_EQ(alloc.allocated(), 0u);
}

TEST(SegmentAllocatorTest, FullSegmentFailsThenReusesFreedBlock) {
  SegmentAllocator alloc(4 * 1024);
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 4; ++i) {
    auto o = alloc.Allocate(1024);
    ASSERT_TRUE(o.has_value());
    offsets.push_back(*o);
  }
  EXPECT_FALSE(alloc.Allocate(1).has_value());
  EXPECT_EQ(alloc.free_bytes(), 0u);
  EXPECT_EQ(alloc.num_free_extents(), 0u);
  ASSERT_TRUE(alloc.Free(offsets[2], 1024).ok());
  auto again = alloc.Allocate(1024);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, offsets[2]);
}

TEST(SegmentAllocatorTest, FreeCoalescesBothNeighbours) {
  SegmentAllocator alloc(3 * 1024);
  auto a = alloc.Allocate(1024);
  auto b = alloc.Allocate(1024);
  auto c = alloc.Allocate(1024);
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(alloc.Free(*a, 1024).ok());
  ASSERT_TRUE(alloc.Free(*c, 1024).ok());
  EXPECT_EQ(alloc.num_free_extents(), 2u);
  EXPECT_FALSE(alloc.Allocate(2048).has_value());  // fragmented: two 1 KiB holes
  ASSERT_TRUE(alloc.Free(*b, 1024).ok());
  EXPECT_EQ(alloc.num_free_extents(), 1u);
  EXPECT_EQ(alloc.largest_free_extent(), 3u * 1024);
  EXPECT_TRUE(alloc.Allocate(3 * 1024).has_value());
}

TEST(SegmentAllocatorTest, BestFitPicksTheSmallestHole) {
  SegmentAllocator alloc(10 * 1024);
  std::vector<uint64_t> o;
  for (int i = 0; i < 10; ++i) o.push_back(*alloc.Allocate(1024));
  // Holes: [0] of 1 KiB, [2..4] of 3 KiB, [6..7] of 2 KiB.
  ASSERT_TRUE(alloc.Free(o[0], 1024).ok());
  for (int i : {2, 3, 4}) ASSERT_TRUE(alloc.Free(o[i], 1024).ok());
  for (int i : {6, 7}) ASSERT_TRUE(alloc.Free(o[i], 1024).ok());
  EXPECT_EQ(*alloc.Allocate(2048), o[6]);
  EXPECT_EQ(*alloc.Allocate(1024), o[0]);
  EXPECT_EQ(*alloc.Allocate(1024), o[2]);
  EXPECT_TRUE(alloc.CheckInvariants().ok());
}

TEST(SegmentAllocatorTest, DoubleFreeAndOutOfRangeFreeAreRejectedWithoutChange) {
  SegmentAllocator alloc(4096);
  auto a = alloc.Allocate(1024);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(alloc.Free(*a, 1024).ok());
  EXPECT_FALSE(alloc.Free(*a, 1024).ok());
  auto b = alloc.Allocate(1024);
  ASSERT_TRUE(b.has_value());
  EXPECT_FALSE(alloc.Free(*b, 2048).ok());  // overlaps the free tail
  EXPECT_FALSE(alloc.Free(8192, 64).ok());
  EXPECT_FALSE(alloc.Free(3, 64).ok());  // unaligned
  EXPECT_FALSE(alloc.Free(0, 0).ok());
  EXPECT_EQ(alloc.allocated(), 1024u);
  EXPECT_TRUE(alloc.CheckInvariants().ok());
}

TEST(SegmentAllocatorTest, UnalignedCapacityKeepsAccountingExact) {
  SegmentAllocator alloc(1000);
  auto a = alloc.Allocate(900);  // 960 bytes
  ASSERT_TRUE(a.has_value());
  EXPECT_FALSE(alloc.Allocate(40).has_value());  // 40 free bytes, but a block is 64
  EXPECT_EQ(alloc.allocated() + alloc.free_bytes(), 1000u);
  ASSERT_TRUE(alloc.Free(*a, 900).ok());
  EXPECT_EQ(alloc.num_free_extents(), 1u);
  EXPECT_TRUE(alloc.CheckInvariants().ok());
}

// Uniform sizes (SGLang's case): after heavy random churn, every free byte is still usable.
TEST(SegmentAllocatorTest, UniformSizesDoNotFragment) {
  constexpr uint64_t kBlock = 4096;
  constexpr int kSlots = 1000;
  SegmentAllocator alloc(kBlock * kSlots);
  Rng rng(7);
  std::vector<uint64_t> live;
  for (int step = 0; step < 50000; ++step) {
    if (!live.empty() && (rng.Bernoulli(0.5) || live.size() == kSlots)) {
      size_t i = rng.Uniform(live.size());
      ASSERT_TRUE(alloc.Free(live[i], kBlock).ok());
      live[i] = live.back();
      live.pop_back();
    } else {
      auto o = alloc.Allocate(kBlock);
      ASSERT_TRUE(o.has_value()) << "failed with " << live.size() << " of " << kSlots << " used";
      live.push_back(*o);
    }
  }
  while (live.size() < kSlots) live.push_back(*alloc.Allocate(kBlock));
  EXPECT_EQ(alloc.free_bytes(), 0u);
  EXPECT_TRUE(alloc.CheckInvariants().ok());
}

// Random mixed sizes against a model: blocks never overlap and accounting is exact.
TEST(SegmentAllocatorTest, RandomMixedSizesMatchModel) {
  constexpr uint64_t kCapacity = 1 << 22;
  SegmentAllocator alloc(kCapacity);
  Rng rng(11);
  std::map<uint64_t, uint64_t> live;  // offset -> size
  uint64_t model_allocated = 0;
  for (int step = 0; step < 20000; ++step) {
    if (!live.empty() && rng.Bernoulli(0.45)) {
      auto it = live.begin();
      std::advance(it, rng.Uniform(live.size()));
      ASSERT_TRUE(alloc.Free(it->first, it->second).ok());
      model_allocated -= SegmentAllocator::AlignedSize(it->second);
      live.erase(it);
    } else {
      uint64_t size = 1 + rng.Uniform(64 * 1024);
      auto o = alloc.Allocate(size);
      if (!o.has_value()) {
        EXPECT_LT(alloc.largest_free_extent(), SegmentAllocator::AlignedSize(size));
        continue;
      }
      EXPECT_EQ(*o % SegmentAllocator::kAlignment, 0u);
      EXPECT_LE(*o + size, kCapacity);
      auto next = live.lower_bound(*o);
      if (next != live.end()) {
        EXPECT_GE(next->first, *o + size);
      }
      if (next != live.begin()) {
        auto prev = std::prev(next);
        EXPECT_LE(prev->first + SegmentAllocator::AlignedSize(prev->second), *o);
      }
      live[*o] = size;
      model_allocated += SegmentAllocator::AlignedSize(size);
    }
    ASSERT_EQ(alloc.allocated(), model_allocated);
    if (step % 1000 == 0) {
      ASSERT_TRUE(alloc.CheckInvariants().ok());
    }
  }
  for (const auto& [offset, size] : live) ASSERT_TRUE(alloc.Free(offset, size).ok());
  EXPECT_EQ(alloc.allocated(), 0u);
  EXPECT_EQ(alloc.num_free_extents(), 1u);
  EXPECT_TRUE(alloc.CheckInvariants().ok());
}

TEST(SegmentAllocatorTest, ReserveRebuildsTheSameLayoutAsAllocate) {
  // A failover rebuilds an allocator from the replicas it was told about: reserving the blocks
  // an allocator handed out gives an allocator in the same state.
  SegmentAllocator original(1 << 20);
  std::vector<std::pair<uint64_t, uint64_t>> blocks;
  for (uint64_t size : {100, 4096, 64, 7000, 1}) {
    auto offset = original.Allocate(size);
    ASSERT_TRUE(offset.has_value());
    blocks.emplace_back(*offset, size);
  }
  ASSERT_TRUE(original.Free(blocks[1].first, blocks[1].second).ok());
  blocks.erase(blocks.begin() + 1);
  SegmentAllocator rebuilt(1 << 20);
  for (const auto& [offset, size] : blocks) ASSERT_TRUE(rebuilt.Reserve(offset, size).ok());
  EXPECT_TRUE(rebuilt.CheckInvariants().ok());
  EXPECT_EQ(rebuilt.allocated(), original.allocated());
  EXPECT_EQ(rebuilt.num_free_extents(), original.num_free_extents());
  EXPECT_EQ(rebuilt.Allocate(4096), original.Allocate(4096));  // the same hole is reused
}

TEST(SegmentAllocatorTest, ReserveRefusesOverlapsAndBadRangesWithoutChange) {
  SegmentAllocator alloc(1 << 16);
  ASSERT_TRUE(alloc.Reserve(128, 100).ok());
  const uint64_t allocated = alloc.allocated();
  EXPECT_FALSE(alloc.Reserve(128, 1).ok());              // the same block
  EXPECT_FALSE(alloc.Reserve(64, 128).ok());             // runs into it
  EXPECT_FALSE(alloc.Reserve(65, 8).ok());               // unaligned
  EXPECT_FALSE(alloc.Reserve(1 << 16, 8).ok());          // outside
  EXPECT_FALSE(alloc.Reserve((1 << 16) - 64, 65).ok());  // runs past the end
  EXPECT_FALSE(alloc.Reserve(0, 0).ok());
  EXPECT_EQ(alloc.allocated(), allocated);
  EXPECT_TRUE(alloc.CheckInvariants().ok());
  EXPECT_TRUE(alloc.Free(128, 100).ok());
  EXPECT_EQ(alloc.num_free_extents(), 1u);
}

}  // namespace
}  // namespace mooncake
