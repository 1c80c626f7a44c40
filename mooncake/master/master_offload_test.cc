// The master's side of the SSD tier (master_offload.cc): what it queues, what it records, and that
// evicted objects with a disk copy stay readable.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mooncake/common/clock.h"
#include "mooncake/master/master_service.h"

namespace mooncake {
namespace {

constexpr ClientId kOwner{1, 1};
constexpr ClientId kOther{2, 2};
constexpr uint64_t kBase = 0x7f0000000000;
constexpr uint64_t kOtherBase = 0x7e0000000000;
constexpr uint64_t kKiB = 1024;

std::vector<absl::string_view> Views(const std::vector<std::string>& keys) {
  return std::vector<absl::string_view>(keys.begin(), keys.end());
}

class MasterOffloadTest : public ::testing::Test {
 protected:
  MasterOffloadTest() : clock_(absl::ToInt64Nanoseconds(absl::Hours(1))) { Reset(); }

  void Reset(bool enable = true) {
    MasterServiceOptions o;
    o.client_ttl = absl::Hours(10);
    o.enable_offload = enable;
    o.eviction_ratio = 0.5;
    master_ = std::make_unique<MasterService>(o, &clock_);
  }
  void Mount(const ClientId& c, const std::string& name, uint64_t base, uint64_t size) {
    ASSERT_TRUE(master_->MountSegment(c, {name, base, size}).ok());
  }
  OffloadSyncResult Sync(const OffloadSyncRequest& req, const ClientId& c = kOwner) {
    auto r = master_->OffloadSync(c, req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : OffloadSyncResult();
  }
  // Puts `key` (16 KiB) on the owner's segment; returns its put id.
  uint64_t Put(const std::string& key, uint64_t size = 16 * kKiB) {
    ReplicateConfig config;
    config.preferred_segments = {"owner"};
    std::vector<uint64_t> sizes = {size};
    auto started = master_->BatchPutStart(Views({key}), sizes, config);
    EXPECT_TRUE(started.ok() && (*started)[0].error == ErrorCode::OK) << key;
    if (!started.ok() || (*started)[0].error != ErrorCode::OK) return 0;
    EXPECT_EQ((*master_->BatchPutEnd(Views({key})))[0], ErrorCode::OK);
    return (*started)[0].put_id;
  }
  std::vector<ReplicaDesc> Replicas(const std::string& key) {
    auto r = master_->BatchGetReplicaList(Views({key}));
    if (!r.ok() || r->objects[0].error != ErrorCode::OK) return {};
    return r->objects[0].replicas;
  }
  ErrorCode Exist(const std::string& key) { return (*master_->BatchExistKey(Views({key})))[0]; }
  // Copies every task (as the tier would) and reports them stored.
  void WriteAllTasks() {
    OffloadSyncRequest req;
    req.max_tasks = 1000;
    for (const OffloadTask& t : Sync(req).tasks) {
      pending_.stored.push_back({t.key, t.put_id, t.size});
    }
    Sync(pending_);
    pending_ = {};
  }

  ManualClock clock_;
  std::unique_ptr<MasterService> master_;
  OffloadSyncRequest pending_;
};

TEST_F(MasterOffloadTest, CompletedObjectsAreHandedOutLeasedAndThenCarryADiskReplica) {
  Mount(kOwner, "owner", kBase, 64 * kKiB);
  Sync({});  // the tier announces itself; objects completed before this are not queued
  const uint64_t put_id = Put("k");
  OffloadSyncRequest take;
  take.max_tasks = 10;
  OffloadSyncResult r = Sync(take);
  ASSERT_EQ(r.tasks.size(), 1u);
  EXPECT_EQ(r.tasks[0].key, "k");
  EXPECT_EQ(r.tasks[0].put_id, put_id);
  EXPECT_EQ(r.tasks[0].size, 16 * kKiB);
  EXPECT_GE(r.tasks[0].address, kBase);
  // Held while copied: a remove without force is refused, even after read leases end.
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ((*master_->BatchRemove(Views({"k"}), false))[0], ErrorCode::OBJECT_HAS_LEASE);
  EXPECT_TRUE(Sync(take).tasks.empty());  // handed out once

  OffloadSyncRequest done;
  done.stored = {{"k", put_id, 16 * kKiB}};
  EXPECT_TRUE(Sync(done).drop.empty());
  std::vector<ReplicaDesc> replicas = Replicas("k");
  ASSERT_EQ(replicas.size(), 2u);
  EXPECT_FALSE(replicas[0].disk);  // memory first
  EXPECT_TRUE(replicas[1].disk);
  EXPECT_EQ(replicas[1].segment_name, "owner");
  EXPECT_EQ(master_->GetMetrics().offload_stored, 1u);
  EXPECT_TRUE(master_->CheckInvariants().ok()) << master_->CheckInvariants();
}

TEST_F(MasterOffloadTest, EvictionKeepsObjectsWithADiskCopyReadableFromDisk) {
  Mount(kOwner, "owner", kBase, 64 * kKiB);
  Sync({});
  for (const char* k : {"a", "b", "c", "d"}) Put(k);
  WriteAllTasks();
  clock_.Advance(absl::Minutes(1));  // leases over
  Put("e");                          // no room: eviction frees memory, keeps the objects
  EXPECT_GE(master_->GetMetrics().evicted_to_disk, 1u);
  int disk_only = 0;
  for (const char* k : {"a", "b", "c", "d"}) {
    EXPECT_EQ(Exist(k), ErrorCode::OK) << k;
    std::vector<ReplicaDesc> replicas = Replicas(k);
    ASSERT_FALSE(replicas.empty()) << k;
    if (replicas.size() == 1 && replicas[0].disk) ++disk_only;
  }
  EXPECT_GE(disk_only, 1);
  EXPECT_TRUE(master_->CheckInvariants().ok()) << master_->CheckInvariants();
  // A disk-only object is still an object: a second put of its key is refused.
  std::vector<uint64_t> sizes = {16 * kKiB};
  ReplicateConfig config;
  auto again = master_->BatchPutStart(Views({"a"}), sizes, config);
  EXPECT_EQ((*again)[0].error, ErrorCode::OBJECT_ALREADY_EXISTS);
  // Objects without a disk copy are evicted as before.
  EXPECT_EQ(master_->GetMetrics().evicted_objects, master_->GetMetrics().evicted_to_disk);
}

TEST_F(MasterOffloadTest, AHandedOutObjectIsHeldUntilReportedStoredOrLost) {
  Mount(kOwner, "owner", kBase, 64 * kKiB);
  Sync({});
  const uint64_t a = Put("a");
  const uint64_t b = Put("b");
  OffloadSyncRequest take;
  take.max_tasks = 10;
  ASSERT_EQ(Sync(take).tasks.size(), 2u);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ((*master_->BatchRemove(Views({"a", "b"}), false))[0], ErrorCode::OBJECT_HAS_LEASE);
  OffloadSyncRequest report;
  report.stored = {{"a", a, 16 * kKiB}};
  report.lost = {{"b", b, 16 * kKiB}};  // its write failed: no disk copy, no longer held
  Sync(report);
  EXPECT_EQ((*master_->BatchRemove(Views({"b"}), false))[0], ErrorCode::OK);
  std::vector<ReplicaDesc> replicas = Replicas("a");
  ASSERT_EQ(replicas.size(), 2u);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ((*master_->BatchRemove(Views({"a"}), false))[0], ErrorCode::OK);
}

TEST_F(MasterOffloadTest, ReportsForAnotherPutOrAGoneKeyAreRefused) {
  Mount(kOwner, "owner", kBase, 64 * kKiB);
  Sync({});
  const uint64_t put_id = Put("k");
  OffloadSyncRequest req;
  req.stored = {{"k", put_id + 1, 16 * kKiB}, {"gone", 7, 10}, {"k", put_id, 99}};
  OffloadSyncResult r = Sync(req);
  EXPECT_EQ(r.drop.size(), 3u);  // the tier deletes those copies
  ASSERT_EQ(Replicas("k").size(), 1u);
  EXPECT_FALSE(Replicas("k")[0].disk);
  EXPECT_EQ(master_->GetMetrics().offload_refused, 3u);
}

TEST_F(MasterOffloadTest, RemovingAnObjectTellsItsTierToDeleteTheCopy) {
  Mount(kOwner, "owner", kBase, 64 * kKiB);
  Sync({});
  const uint64_t put_id = Put("k");
  WriteAllTasks();
  clock_.Advance(absl::Minutes(1));
  ASSERT_EQ((*master_->BatchRemove(Views({"k"}), false))[0], ErrorCode::OK);
  OffloadSyncResult r = Sync({});
  ASSERT_EQ(r.drop.size(), 1u);
  EXPECT_EQ(r.drop[0].key, "k");
  EXPECT_EQ(r.drop[0].put_id, put_id);
  EXPECT_EQ(Exist("k"), ErrorCode::OBJECT_NOT_FOUND);
}

TEST_F(MasterOffloadTest, ARestartedMasterGetsDiskObjectsBackFromTheirTier) {
  Reset();  // a master that knows nothing (it restarted)
  Mount(kOwner, "owner", kBase, 64 * kKiB);
  Mount(kOther, "other", kOtherBase, 64 * kKiB);
  ReplicateConfig config;
  config.preferred_segments = {"other"};
  std::vector<uint64_t> sizes = {100};
  auto taken = master_->BatchPutStart(Views({"taken"}), sizes, config);
  ASSERT_EQ((*taken)[0].error, ErrorCode::OK);  // the key now names another (unfinished) put

  OffloadSyncRequest req;
  req.recovered = {{"p1", 11, 5000}, {"p2", 12, 6000}, {"taken", 13, 100}, {"", 1, 1}};
  OffloadSyncResult r = Sync(req);
  ASSERT_EQ(r.drop.size(), 1u);
  EXPECT_EQ(r.drop[0].key, "taken");
  EXPECT_EQ(Exist("p1"), ErrorCode::OK);
  std::vector<ReplicaDesc> replicas = Replicas("p2");
  ASSERT_EQ(replicas.size(), 1u);
  EXPECT_TRUE(replicas[0].disk);
  EXPECT_EQ(replicas[0].size, 6000u);
  EXPECT_EQ(master_->GetMetrics().offload_recovered, 2u);
  EXPECT_TRUE(master_->CheckInvariants().ok()) << master_->CheckInvariants();

  // The tier loses p1 (its disk evicted it): with no copy left the object is gone.
  OffloadSyncRequest lost;
  lost.lost = {{"p1", 11, 5000}, {"p2", 999, 6000}};  // p2: another put, ignored
  Sync(lost);
  EXPECT_EQ(Exist("p1"), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(Exist("p2"), ErrorCode::OK);

  // The holder's death takes its disk copies with it.
  ASSERT_TRUE(master_->UnmountSegment(kOwner, "owner", kBase).ok());
  EXPECT_EQ(Exist("p2"), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_TRUE(master_->CheckInvariants().ok()) << master_->CheckInvariants();
}

TEST_F(MasterOffloadTest, BadCallsGetClearErrors) {
  EXPECT_EQ(ToErrorCode(master_->OffloadSync(kOwner, {}).status()), ErrorCode::CLIENT_NOT_FOUND);
  EXPECT_EQ(ToErrorCode(master_->OffloadSync(ClientId{}, {}).status()), ErrorCode::INVALID_PARAMS);
  OffloadSyncRequest huge;
  huge.max_tasks = kMaxBatchKeys + 1;
  Mount(kOwner, "owner", kBase, 64 * kKiB);
  EXPECT_EQ(ToErrorCode(master_->OffloadSync(kOwner, huge).status()), ErrorCode::INVALID_PARAMS);
  Reset(/*enable=*/false);
  Mount(kOwner, "owner", kBase, 64 * kKiB);
  absl::Status s = master_->OffloadSync(kOwner, {}).status();
  EXPECT_EQ(ToErrorCode(s), ErrorCode::NOT_SUPPORTED);
  EXPECT_NE(std::string(s.message()).find("--enable_offload"), std::string::npos);
}

}  // namespace
}  // namespace mooncake
