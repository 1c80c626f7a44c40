// The SSD tier end to end in one process: a master with --enable_offload, a storage client with a
// small segment and a disk tier on real files, and a pure client that reads. Objects evicted from
// memory read back from disk, and a restarted storage client gets its objects back.
#include "mooncake/store/disk_tier.h"

#include <stdlib.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/rng.h"
#include "mooncake/master/local_master_client.h"
#include "mooncake/master/master_service.h"
#include "mooncake/store/store_client.h"

namespace mooncake {
namespace {

std::string Value(int i, uint64_t size) {
  std::string v(size, '\0');
  Rng rng(static_cast<uint64_t>(i) * 7919 + 1);
  for (char& c : v) c = static_cast<char>(rng.Next64());
  return v;
}

class DiskTierTest : public ::testing::Test {
 protected:
  DiskTierTest() {
    MasterServiceOptions o;
    o.enable_offload = true;
    o.default_kv_lease_ttl = absl::Milliseconds(200);
    master_ = std::make_unique<MasterService>(o, RealClock::Get());
    char tmpl[] = "/tmp/disk_tier_test.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~DiskTierTest() override { EXPECT_EQ(system(("rm -rf " + dir_).c_str()), 0); }

  std::unique_ptr<StoreClient> Client(uint64_t segment, bool offload) {
    StoreOptions o;
    o.config.master_server_address = "127.0.0.1:1";  // unused: the master is in-process
    o.config.local_hostname = "127.0.0.1";
    o.config.global_segment_size = segment;
    o.config.enable_ssd_offload = offload;
    o.config.ssd_offload_path = dir_ + "/ssd";
    o.master = std::make_unique<LocalMasterClient>(master_.get());
    o.prefault_segment = false;
    auto c = StoreClient::Create(std::move(o));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Waits until the tier reported `n` objects durable.
  void AwaitStored(uint64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (master_->GetMetrics().offload_stored + master_->GetMetrics().offload_recovered < n &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_GE(master_->GetMetrics().offload_stored + master_->GetMetrics().offload_recovered, n);
  }

  std::unique_ptr<MasterService> master_;
  std::string dir_;
};

TEST_F(DiskTierTest, EvictedObjectsReadBackFromDiskAndSurviveARestart) {
  constexpr uint64_t kSegment = 8 << 20, kObject = 256 << 10;
  constexpr int kObjects = 128;  // 32 MiB through an 8 MiB segment
  auto storage = Client(kSegment, /*offload=*/true);
  auto reader = Client(0, false);
  ASSERT_NE(storage, nullptr);
  ASSERT_NE(reader, nullptr);
  std::string buf(kObject, '\0');
  ASSERT_TRUE(reader->RegisterBuffer(buf.data(), buf.size()).ok());
  for (int i = 0; i < kObjects; ++i) {
    std::string v = Value(i, kObject);
    std::memcpy(buf.data(), v.data(), v.size());
    std::vector<int> rc =
        reader->BatchPut({"k" + std::to_string(i)}, {{{buf.data(), kObject}}}, ReplicateConfig());
    ASSERT_EQ(rc[0], 0) << i;
    // Pace to the disk so every object gets its copy before the pool needs its space.
    AwaitStored(i + 1);
  }
  EXPECT_GT(master_->GetMetrics().evicted_to_disk, 0u);
  auto read_all = [&](const char* when) -> int {
    int from_disk_only = 0;
    for (int i = 0; i < kObjects; ++i) {
      const std::string key = "k" + std::to_string(i);
      EXPECT_EQ(reader->BatchIsExist({key})[0], 1) << when << " " << key;
      std::vector<int64_t> got = reader->BatchGet({key}, {{{buf.data(), kObject}}});
      EXPECT_EQ(got[0], static_cast<int64_t>(kObject)) << when << " " << key;
      if (got[0] != static_cast<int64_t>(kObject)) continue;
      EXPECT_EQ(buf, Value(i, kObject)) << when << ": wrong bytes for " << key;
      auto list = master_->BatchGetReplicaList({key});
      if (list->objects[0].replicas.size() == 1 && list->objects[0].replicas[0].disk) {
        ++from_disk_only;
      }
    }
    return from_disk_only;
  };
  EXPECT_GE(read_all("before the restart"), kObjects - static_cast<int>(kSegment / kObject));
  EXPECT_GT(storage->disk_tier()->GetStats().served_reads, 0u);

  // A restart: the process goes (its segment and disk copies leave the master), a new one opens
  // the same directory and reports what it holds.
  storage.reset();
  EXPECT_EQ(reader->BatchIsExist({"k0"})[0], 0);
  storage = Client(kSegment, /*offload=*/true);
  ASSERT_NE(storage, nullptr);
  EXPECT_EQ(storage->disk_tier()->GetStats().store.recovered_objects,
            static_cast<uint64_t>(kObjects));
  AwaitStored(2 * kObjects);
  EXPECT_EQ(read_all("after the restart"), kObjects);

  // Removing an object deletes its disk copy too: after another restart it stays gone.
  ASSERT_EQ(reader->Remove("k5", /*force=*/true), 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (storage->disk_tier()->store()->Contains("k5") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_FALSE(storage->disk_tier()->store()->Contains("k5"));
  storage.reset();
  storage = Client(kSegment, /*offload=*/true);
  EXPECT_FALSE(storage->disk_tier()->store()->Contains("k5"));
  EXPECT_EQ(storage->disk_tier()->GetStats().store.recovered_objects,
            static_cast<uint64_t>(kObjects - 1));
  EXPECT_TRUE(master_->CheckInvariants().ok()) << master_->CheckInvariants();
}

TEST_F(DiskTierTest, BadDiskReadRequestsGetClearErrors) {
  auto storage = Client(8 << 20, /*offload=*/true);
  ASSERT_NE(storage, nullptr);
  absl::StatusOr<std::string> r = storage->engine()->HandleService("garbage");
  EXPECT_EQ(ToErrorCode(r.status()), ErrorCode::INVALID_PARAMS);
  // A pure client serves no disk reads.
  auto reader = Client(0, false);
  r = reader->engine()->CallService(storage->hostname(), "garbage");
  EXPECT_EQ(ToErrorCode(r.status()), ErrorCode::INVALID_PARAMS);
  r = storage->engine()->CallService(reader->hostname(), "x");
  EXPECT_EQ(ToErrorCode(r.status()), ErrorCode::NOT_SUPPORTED);
}

}  // namespace
}  // namespace mooncake
