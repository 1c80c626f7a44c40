// The production StoreCore in the simulated cluster: behaviours a user would notice, each checked
// against the real MasterService on simulated time.
#include "sim/cluster/store_cluster.h"

#include <cstring>

#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"

namespace sim {
namespace {

using mooncake::BufferRef;
using mooncake::ErrorCode;

StoreClusterOptions SmallCluster() {
  StoreClusterOptions o;
  o.hosts = 2;
  o.ranks = 1;
  o.segment_size = 1 << 20;
  o.buffer_size = 1 << 20;
  o.master.client_ttl = absl::Milliseconds(500);
  o.master.default_kv_lease_ttl = absl::Milliseconds(50);
  return o;
}

class StoreClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
    cluster_ = std::make_unique<StoreCluster>(SmallCluster());
    ASSERT_TRUE(cluster_->Start().ok());
    cluster_->sim().RunFor(5 * kMillisecond);
    ASSERT_TRUE(cluster_->client(0).core->mounted());
    ASSERT_TRUE(cluster_->client(1).core->mounted());
  }

  int Put(int client, const std::string& key, char fill, uint64_t size,
          mooncake::ReplicateConfig config = {}) {
    StoreCluster::Client& c = cluster_->client(client);
    std::memset(c.buffer, fill, size);
    int rc = 1;
    c.core->BatchPut({key}, {{{c.buffer, size}}}, config, [&](std::vector<int> r) { rc = r[0]; });
    cluster_->world().RunFor([&] { return rc != 1; }, kSecond);
    return rc;
  }

  int Exists(int client, const std::string& key) {
    int rc = 2;
    cluster_->client(client).core->BatchIsExist({key}, [&](std::vector<int> r) { rc = r[0]; });
    cluster_->world().RunFor([&] { return rc != 2; }, kSecond);
    return rc;
  }

  std::unique_ptr<StoreCluster> cluster_;
};

TEST_F(StoreClusterTest, PutThenGetAcrossHostsOverRdma) {
  ASSERT_EQ(Put(0, "k", 'x', 64 << 10,
                [] {
                  mooncake::ReplicateConfig c;
                  c.preferred_segments = {"host1:15000"};
                  return c;
                }()),
            0);
  StoreCluster::Client& reader = cluster_->client(0);
  std::memset(reader.buffer, 0, 64 << 10);
  int64_t got = 0;
  reader.core->BatchGet({"k"}, {{{reader.buffer, 64 << 10}}},
                        [&](std::vector<int64_t> r) { got = r[0]; });
  cluster_->world().RunFor([&] { return got != 0; }, kSecond);
  EXPECT_EQ(got, 64 << 10);
  EXPECT_EQ(reader.buffer[0], 'x');
  EXPECT_EQ(reader.buffer[(64 << 10) - 1], 'x');
  EXPECT_GT(cluster_->bytes_moved(), 2u * (64 << 10) - 1);
}

// Two writers of one key at once (MLA pages, shared prefixes): the second is told the first is in
// flight and waits, so each put answers 0 only once the object is readable.
TEST_F(StoreClusterTest, ConcurrentWritersOfOneKeyAnswerOnlyOnceItIsReadable) {
  std::vector<int> rc(2, 1);
  std::vector<bool> complete_at_answer(2, false);
  for (int i = 0; i < 2; ++i) {
    StoreCluster::Client& c = cluster_->client(i);
    std::memset(c.buffer, 'm', 256 << 10);
    c.core->BatchPut({"page"}, {{{c.buffer, 256 << 10}}}, {}, [&, i](std::vector<int> r) {
      rc[i] = r[0];
      auto exist = cluster_->master().service()->BatchExistKey({"page"});
      complete_at_answer[i] = exist.ok() && (*exist)[0] == ErrorCode::OK;
    });
  }
  cluster_->world().RunFor([&] { return rc[0] != 1 && rc[1] != 1; }, kSecond);
  EXPECT_EQ(rc[0], 0);
  EXPECT_EQ(rc[1], 0);
  EXPECT_TRUE(complete_at_answer[0]);
  EXPECT_TRUE(complete_at_answer[1]);
}

// A crashed host's objects stop existing within client_ttl (plus a master tick), even though
// nothing told the master the host died.
TEST_F(StoreClusterTest, CrashedHostsObjectsStopExistingWithinClientTtl) {
  mooncake::ReplicateConfig on_host1;
  on_host1.preferred_segments = {"host1:15000"};
  ASSERT_EQ(Put(1, "doomed", 'd', 4096, on_host1), 0);
  ASSERT_EQ(Exists(0, "doomed"), 1);
  const SimTime crash = cluster_->sim().Now();
  cluster_->CrashHost(1);
  cluster_->world().RunFor([&] { return Exists(0, "doomed") == 0; }, 2 * kSecond);
  EXPECT_EQ(Exists(0, "doomed"), 0);
  EXPECT_LE(cluster_->sim().Now() - crash,
            500 * kMillisecond + 2 * cluster_->options().link.tick_period);
}

// A client cut off from the master for longer than client_ttl is forgotten; once the partition
// heals its heartbeat remounts the segment and puts into it work again.
TEST_F(StoreClusterTest, PartitionedClientRemountsAfterHeal) {
  cluster_->master().SetPartitioned(cluster_->host_id(1), true);
  cluster_->sim().RunFor(800 * kMillisecond);
  EXPECT_EQ(cluster_->master().service()->ListSegments().size(), 1u);
  EXPECT_EQ(Put(1, "cut-off", 'c', 4096), static_cast<int>(ErrorCode::RPC_TIMEOUT));
  cluster_->master().SetPartitioned(cluster_->host_id(1), false);
  cluster_->sim().RunFor(300 * kMillisecond);
  EXPECT_EQ(cluster_->master().service()->ListSegments().size(), 2u);
  mooncake::ReplicateConfig on_host1;
  on_host1.preferred_segments = {"host1:15000"};
  EXPECT_EQ(Put(1, "back", 'b', 4096, on_host1), 0);
  EXPECT_EQ(Exists(0, "back"), 1);
}

}  // namespace
}  // namespace sim
