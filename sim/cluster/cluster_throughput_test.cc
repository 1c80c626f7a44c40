// The throughput benchmark's workload on a small cluster, with every byte copied and verified.
#include "sim/cluster/cluster_throughput.h"

#include "gtest/gtest.h"
#include "mooncake/common/logging.h"

namespace sim {
namespace {

ThroughputOptions Small() {
  ThroughputOptions o;
  o.hosts = 3;
  o.ranks = 2;
  o.nics = 2;
  o.page_bytes = 16 << 10;
  o.pages_per_batch = 32;
  o.segment_pages = 512;
  o.warmup = 5 * kMillisecond;
  o.measure = 10 * kMillisecond;
  o.verify = true;
  return o;
}

TEST(ClusterThroughputTest, MhaReadsBackEveryByteAndCountsRoundTrips) {
  mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
  const ThroughputResult r = RunClusterThroughput(Small());
  EXPECT_GT(r.get_batches, 20u);
  EXPECT_GT(r.put_batches, 20u);
  EXPECT_EQ(r.key_errors, 0u);
  for (const auto& [code, n] : r.errors) ADD_FAILURE() << n << " keys failed with " << code;
  EXPECT_GT(r.line_rate, 0.0);
  EXPECT_LE(r.line_rate, 1.0);
  // A prefetch is one exist (whose replica lists the get then reads from); a backup is exist,
  // put-start and put-end.
  EXPECT_EQ(r.master_calls_per_get_batch, 1.0);
  EXPECT_EQ(r.master_calls_per_put_batch, 3.0);
  EXPECT_GE(r.p99_batch_ms, r.p50_batch_ms);
  EXPECT_NE(r.Line().find("cluster throughput: hosts=3 nics=2 page=16KiB line_rate="),
            std::string::npos);
}

TEST(ClusterThroughputTest, WithoutTheReplicaCacheAGetAsksTheMasterAgain) {
  mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
  ThroughputOptions o = Small();
  o.replica_cache = false;
  const ThroughputResult r = RunClusterThroughput(o);
  EXPECT_EQ(r.key_errors, 0u);
  EXPECT_EQ(r.master_calls_per_get_batch, 2.0);
  EXPECT_EQ(r.master_calls_per_put_batch, 3.0);
}

TEST(ClusterThroughputTest, MlaRanksSharePagesAndDeduplicate) {
  mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
  ThroughputOptions o = Small();
  o.mla = true;
  const ThroughputResult r = RunClusterThroughput(o);
  EXPECT_GT(r.get_batches, 20u);
  EXPECT_EQ(r.key_errors, 0u);
}

}  // namespace
}  // namespace sim
