#include "mooncake/common/rng.h"

#include <algorithm>
#include <vector>

#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(RngTest, SameSeedSameSequence) {
  Rng a(7), b(7), c(8);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    uint64_t x = a.Next64();
    EXPECT_EQ(x, b.Next64());
    differs |= (x != c.Next64());
  }
  EXPECT_TRUE(differs);
}

TEST(RngTest, SequenceIsStableAcrossBuilds) {
  // Pinned values: a simulation seed recorded today must replay identically tomorrow.
  Rng rng(0);
  uint64_t first = rng.Next64();
  Rng again(0);
  EXPECT_EQ(first, again.Next64());
  EXPECT_EQ(first, 0x99ec5f36cb75f2b4ull);
}

TEST(RngTest, UniformStaysInRangeAndCoversIt) {
  Rng rng(1);
  std::vector<int> hits(10);
  for (int i = 0; i < 100000; ++i) {
    uint64_t v = rng.Uniform(10);
    ASSERT_LT(v, 10u);
    ++hits[v];
  }
  for (int h : hits) {
    EXPECT_GT(h, 9000);
    EXPECT_LT(h, 11000);
  }
  EXPECT_EQ(rng.Uniform(0), 0u);
  for (int i = 0; i < 1000; ++i) {
    int64_t v = rng.UniformRange(-3, 3);
    EXPECT_GE(v, -3);
    EXPECT_LE(v, 3);
  }
}

TEST(RngTest, BernoulliMatchesProbability) {
  Rng rng(2);
  int yes = 0;
  for (int i = 0; i < 100000; ++i) yes += rng.Bernoulli(0.25);
  EXPECT_GT(yes, 24000);
  EXPECT_LT(yes, 26000);
  EXPECT_FALSE(Rng(3).Bernoulli(0.0));
}

TEST(RngTest, ForkIsDeterministicAndIndependent) {
  Rng a(5), b(5);
  Rng fa = a.Fork(), fb = b.Fork();
  EXPECT_EQ(fa.Next64(), fb.Next64());
  EXPECT_NE(a.Next64(), fa.Next64());
  std::vector<int> v = {1, 2, 3, 4, 5};
  std::shuffle(v.begin(), v.end(), a);  // works as a standard bit generator
  std::sort(v.begin(), v.end());
  EXPECT_EQ(v, (std::vector<int>{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace mooncake
