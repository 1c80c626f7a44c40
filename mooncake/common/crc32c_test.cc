#include "mooncake/common/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(Crc32cTest, KnownVectors) {
  // RFC 3720 B.4 and the common "123456789" check value.
  EXPECT_EQ(Crc32c("123456789", 9), 0xe3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8a9136aau);
  std::string ones(32, '\xff');
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62a8ab43u);
  EXPECT_EQ(Crc32c("", 0), 0u);
}

TEST(Crc32cTest, ExtendEqualsWholeAndDetectsOneBitFlip) {
  std::string data;
  for (int i = 0; i < 10000; ++i) data.push_back(static_cast<char>(i * 131 + 7));
  const uint32_t whole = Crc32c(data.data(), data.size());
  for (size_t cut : {0, 1, 7, 8, 9, 4095, 9999, 10000}) {
    uint32_t c = Crc32c(data.data(), cut);
    EXPECT_EQ(Crc32cExtend(c, data.data() + cut, data.size() - cut), whole) << cut;
  }
  data[5000] ^= 0x10;
  EXPECT_NE(Crc32c(data.data(), data.size()), whole);
}

}  // namespace
}  // namespace mooncake
