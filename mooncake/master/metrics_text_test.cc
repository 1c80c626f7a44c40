#include "mooncake/master/metrics_text.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mooncake {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTextTest, PrometheusTextHasTypedGaugesAndCounters) {
  MasterMetrics m;
  m.segments = 2;
  m.capacity_bytes = 1 << 30;
  m.allocated_bytes = 4096;
  m.objects = 7;
  m.exist_keys = 256;
  m.evicted_objects = 3;
  const std::string text = PrometheusText(m);
  EXPECT_THAT(text,
              HasSubstr("# TYPE mooncake_master_segments gauge\nmooncake_master_segments 2\n"));
  EXPECT_THAT(text, HasSubstr("mooncake_master_capacity_bytes 1073741824\n"));
  EXPECT_THAT(text, HasSubstr("mooncake_master_allocated_bytes 4096\n"));
  EXPECT_THAT(text, HasSubstr("mooncake_master_objects 7\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE mooncake_master_exist_keys_total counter\n"
                              "mooncake_master_exist_keys_total 256\n"));
  EXPECT_THAT(text, HasSubstr("mooncake_master_evicted_objects_total 3\n"));
  // Every sample line is "name value" with a HELP and TYPE before it.
  size_t samples = 0, types = 0, helps = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "unterminated last line";
    const std::string line = text.substr(start, end - start);
    if (line.rfind("# TYPE ", 0) == 0) {
      ++types;
    } else if (line.rfind("# HELP ", 0) == 0) {
      ++helps;
    } else {
      ++samples;
      EXPECT_EQ(std::count(line.begin(), line.end(), ' '), 1) << line;
    }
    start = end + 1;
  }
  EXPECT_EQ(samples, types);
  EXPECT_EQ(samples, helps);
  EXPECT_GE(samples, 20u);
}

TEST(MetricsTextTest, SegmentListNamesEachSegmentOnce) {
  EXPECT_EQ(SegmentListText({}), "");
  std::vector<SegmentStatus> segments = {
      {{"b:1", 0x1000, 100}, {1, 1}, 0},
      {{"a:1", 0x1000, 100}, {2, 2}, 0},
      {{"b:1", 0x9000, 100}, {1, 1}, 0},
  };
  EXPECT_EQ(SegmentListText(segments), "a:1\nb:1\n");
  EXPECT_THAT(SegmentListText(segments), Not(HasSubstr("c:1")));
}

}  // namespace
}  // namespace mooncake
