#include "mooncake/common/byte_size.h"

#include "gtest/gtest.h"

namespace mooncake {
namespace {

uint64_t Parse(absl::string_view s) {
  absl::StatusOr<uint64_t> v = ParseByteSize(s);
  EXPECT_TRUE(v.ok()) << s << ": " << v.status();
  return v.value_or(0);
}

TEST(ByteSizeTest, PlainIntegers) {
  EXPECT_EQ(Parse("4294967296"), 4294967296ull);
  EXPECT_EQ(Parse("0"), 0u);
  EXPECT_EQ(Parse(" 17 "), 17u);
  EXPECT_EQ(Parse("18446744073709551615"), UINT64_MAX);
}

TEST(ByteSizeTest, UnitsAreBinaryInAnySpelling) {
  EXPECT_EQ(Parse("4gb"), 4ull << 30);
  EXPECT_EQ(Parse("4GB"), 4ull << 30);
  EXPECT_EQ(Parse("4G"), 4ull << 30);
  EXPECT_EQ(Parse("4GiB"), 4ull << 30);
  EXPECT_EQ(Parse("512mb"), 512ull << 20);
  EXPECT_EQ(Parse("64 KiB"), 64ull << 10);
  EXPECT_EQ(Parse("2tb"), 2ull << 40);
  EXPECT_EQ(Parse("100b"), 100u);
}

TEST(ByteSizeTest, FractionsThatAreWholeBytes) {
  EXPECT_EQ(Parse("1.5GiB"), 1610612736ull);
  EXPECT_EQ(Parse("0.5kb"), 512u);
  EXPECT_EQ(Parse("2.25mb"), 2359296u);
}

TEST(ByteSizeTest, RejectsBadInputAndQuotesIt) {
  for (const char* bad :
       {"", "  ", "-1", "-4gb", "abc", "4xb", "4 gigs", "1.5", "0.1kb", "gb",
        "18446744073709551616", "99999999999999999999999", "16384pb", "1e9", "4 gb extra", "."}) {
    absl::StatusOr<uint64_t> v = ParseByteSize(bad);
    EXPECT_FALSE(v.ok()) << "accepted \"" << bad << "\" as " << v.value_or(0);
    if (!v.ok()) {
      EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(v.status().message().find(std::string("\"") + bad + "\""), absl::string_view::npos)
          << v.status();
    }
  }
}

TEST(ByteSizeTest, Format) {
  EXPECT_EQ(FormatByteSize(512), "512 B");
  EXPECT_EQ(FormatByteSize(4ull << 30), "4 GiB");
  EXPECT_EQ(FormatByteSize(1536ull << 10), "1.5 MiB");
}

}  // namespace
}  // namespace mooncake
