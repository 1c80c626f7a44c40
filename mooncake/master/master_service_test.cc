#include "mooncake/master/master_service.h"

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/rng.h"

namespace mooncake {

// Failure messages name the code.
void PrintTo(ErrorCode code, std::ostream* os) { *os << ErrorCodeName(code); }

namespace {

using ::testing::Each;
using ::testing::ElementsAre;

constexpr ClientId kClientA{1, 1};
constexpr ClientId kClientB{2, 2};
constexpr ClientId kClientC{3, 3};
constexpr uint64_t kBaseA = 0x7f0000000000;
constexpr uint64_t kBaseB = 0x7e0000000000;
constexpr uint64_t kBaseC = 0x7d0000000000;
constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

// Holds the string_views a batch call takes.
std::vector<absl::string_view> Views(const std::vector<std::string>& keys) {
  return std::vector<absl::string_view>(keys.begin(), keys.end());
}

class MasterServiceTest : public ::testing::Test {
 protected:
  MasterServiceTest() : clock_(absl::ToInt64Nanoseconds(absl::Hours(1))) { Reset(Options()); }

  // Default options, except that clients live long unless a test is about liveness.
  static MasterServiceOptions Options() {
    MasterServiceOptions options;
    options.client_ttl = absl::Hours(10);
    return options;
  }

  void Reset(const MasterServiceOptions& options) {
    master_ = std::make_unique<MasterService>(options, &clock_);
  }

  void Mount(const ClientId& client, const std::string& name, uint64_t base, uint64_t size) {
    ASSERT_TRUE(master_->MountSegment(client, {name, base, size}).ok());
  }

  std::vector<ObjectReplicas> PutStart(const std::vector<std::string>& keys, uint64_t size,
                                       const ReplicateConfig& config = {}) {
    std::vector<uint64_t> sizes(keys.size(), size);
    auto result = master_->BatchPutStart(Views(keys), sizes, config);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : std::vector<ObjectReplicas>();
  }

  ErrorCode PutStartOne(const std::string& key, uint64_t size, const ReplicateConfig& config = {}) {
    std::vector<ObjectReplicas> r = PutStart({key}, size, config);
    return r.empty() ? ErrorCode::INTERNAL_ERROR : r[0].error;
  }

  // Put = start + end; returns the start result's code.
  ErrorCode Put(const std::string& key, uint64_t size, const ReplicateConfig& config = {}) {
    ErrorCode code = PutStartOne(key, size, config);
    if (code == ErrorCode::OK) {
      EXPECT_THAT(*master_->BatchPutEnd(Views({key})), Each(ErrorCode::OK));
    }
    return code;
  }

  ErrorCode Exist(const std::string& key) { return (*master_->BatchExistKey(Views({key})))[0]; }

  ObjectReplicas Get(const std::string& key) {
    return (*master_->BatchGetReplicaList(Views({key}))).objects[0];
  }

  ErrorCode Remove(const std::string& key, bool force = false) {
    return (*master_->BatchRemove(Views({key}), force))[0];
  }

  ErrorCode Revoke(const std::string& key) { return (*master_->BatchPutRevoke(Views({key})))[0]; }

  void ExpectInvariants() {
    absl::Status s = master_->CheckInvariants();
    EXPECT_TRUE(s.ok()) << s;
  }

  // What a user can observe about the pool; equal before and after a rejected call.
  struct Snapshot {
    uint64_t objects, processing, segments, clients, capacity, allocated;
    bool operator==(const Snapshot& o) const {
      return objects == o.objects && processing == o.processing && segments == o.segments &&
             clients == o.clients && capacity == o.capacity && allocated == o.allocated;
    }
  };
  Snapshot Snap() {
    MasterMetrics m = master_->GetMetrics();
    return {m.objects, m.processing_objects, m.segments,
            m.clients, m.capacity_bytes,     m.allocated_bytes};
  }

  ManualClock clock_;
  std::unique_ptr<MasterService> master_;
};

// ---------------------------------------------------------------------------------------------
// Two-phase put and state transitions

TEST_F(MasterServiceTest, PutStartIsInvisibleUntilPutEnd) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  std::vector<ObjectReplicas> started = PutStart({"k"}, 4 * kMiB);
  ASSERT_EQ(started.size(), 1u);
  ASSERT_EQ(started[0].error, ErrorCode::OK);
  EXPECT_EQ(started[0].size, 4 * kMiB);
  ASSERT_EQ(started[0].replicas.size(), 1u);
  const ReplicaDesc replica = started[0].replicas[0];
  EXPECT_EQ(replica.segment_name, "host-a:1");
  EXPECT_EQ(replica.size, 4 * kMiB);
  EXPECT_GE(replica.address, kBaseA);
  EXPECT_LE(replica.address + replica.size, kBaseA + 64 * kMiB);

  EXPECT_EQ(Exist("k"), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(Get("k").error, ErrorCode::REPLICA_IS_NOT_READY);
  EXPECT_EQ(master_->GetMetrics().processing_objects, 1u);

  EXPECT_THAT(*master_->BatchPutEnd(Views({"k"})), ElementsAre(ErrorCode::OK));
  EXPECT_EQ(Exist("k"), ErrorCode::OK);
  ObjectReplicas got = Get("k");
  EXPECT_EQ(got.error, ErrorCode::OK);
  EXPECT_EQ(got.size, 4 * kMiB);
  EXPECT_THAT(got.replicas, ElementsAre(replica));
  EXPECT_EQ(master_->GetMetrics().processing_objects, 0u);
  ExpectInvariants();
}

// Regression (defect 4, the master's half): a put-start repeated because its answer was lost used
// to find the first attempt's put and answer REPLICA_IS_NOT_READY. With the caller's put ids the
// repeat answers the same replicas and allocates nothing more; without them it still sees another
// writer's put in flight.
TEST_F(MasterServiceTest, RepeatedPutStartWithTheSamePutIdsFindsItsOwnPut) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  const std::vector<uint64_t> sizes = {kMiB, kMiB};
  const std::vector<uint64_t> ids = {(uint64_t{1} << 63) | 5, (uint64_t{1} << 63) | 6};
  auto first = master_->BatchPutStart(Views({"a", "b"}), sizes, {}, ids);
  ASSERT_TRUE(first.ok());
  const uint64_t allocated = master_->GetMetrics().allocated_bytes;
  auto again = master_->BatchPutStart(Views({"a", "b"}), sizes, {}, ids);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ((*again)[i].error, ErrorCode::OK);
    EXPECT_EQ((*again)[i].put_id, ids[i]);
    EXPECT_EQ((*again)[i].replicas, (*first)[i].replicas);
  }
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, allocated);
  EXPECT_EQ(master_->GetMetrics().processing_objects, 2u);
  // Another writer (other ids, or none) still waits for these puts.
  EXPECT_EQ((*master_->BatchPutStart(Views({"a"}), {kMiB}, {}, {ids[0] + 100}))[0].error,
            ErrorCode::REPLICA_IS_NOT_READY);
  EXPECT_EQ(PutStartOne("b", kMiB), ErrorCode::REPLICA_IS_NOT_READY);
  // Completed: the repeat answers that the object exists.
  ASSERT_THAT(*master_->BatchPutEnd(Views({"a"}), {ids[0]}), Each(ErrorCode::OK));
  EXPECT_EQ((*master_->BatchPutStart(Views({"a"}), {kMiB}, {}, {ids[0]}))[0].error,
            ErrorCode::OBJECT_ALREADY_EXISTS);
  EXPECT_EQ(ToErrorCode(master_->BatchPutStart(Views({"c"}), {kMiB}, {}, {0}).status()),
            ErrorCode::INVALID_PARAMS);
  ExpectInvariants();
}

// A put whose writes may still land (IsUnsettledWrite) is revoked into quarantine: the key is free
// at once, the space is handed out again only after put_start_release_timeout.
TEST_F(MasterServiceTest, QuarantinedRevokeFreesTheKeyButNotTheSpace) {
  MasterServiceOptions o = Options();
  o.put_start_release_timeout = absl::Seconds(60);
  Reset(o);
  Mount(kClientA, "host-a:1", kBaseA, kMiB);  // room for one object
  std::vector<ObjectReplicas> first = PutStart({"k"}, kMiB);
  ASSERT_EQ(first[0].error, ErrorCode::OK);
  EXPECT_THAT(*master_->BatchPutRevoke(Views({"k"}), {first[0].put_id}, /*quarantine=*/true),
              Each(ErrorCode::OK));
  EXPECT_EQ(master_->GetMetrics().discarded_bytes, kMiB);
  EXPECT_EQ(PutStartOne("other", kMiB), ErrorCode::NO_AVAILABLE_HANDLE) << "space reused at once";
  ExpectInvariants();
  clock_.Advance(absl::Seconds(61));
  master_->Tick();
  std::vector<ObjectReplicas> again = PutStart({"k"}, kMiB);
  ASSERT_EQ(again[0].error, ErrorCode::OK);
  EXPECT_EQ(again[0].replicas[0].address, first[0].replicas[0].address);
  ExpectInvariants();
}

// A put is ended or revoked only by its own put id: after the master dropped a writer's put (its
// segment died, or it was abandoned), that writer's late put-end or revoke must not touch another
// writer's put of the same key, whose space may still be being written.
TEST_F(MasterServiceTest, PutEndAndRevokeActOnlyOnTheirOwnPut) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  std::vector<ObjectReplicas> first = PutStart({"k"}, kMiB);
  ASSERT_EQ(first[0].error, ErrorCode::OK);
  ASSERT_EQ(Revoke("k"), ErrorCode::OK);  // the first put is gone (as if dropped)
  std::vector<ObjectReplicas> second = PutStart({"k"}, kMiB);
  ASSERT_EQ(second[0].error, ErrorCode::OK);
  ASSERT_NE(first[0].put_id, second[0].put_id);
  const Snapshot snap = Snap();
  EXPECT_THAT(*master_->BatchPutRevoke(Views({"k"}), {first[0].put_id}),
              Each(ErrorCode::OBJECT_NOT_FOUND));
  EXPECT_THAT(*master_->BatchPutEnd(Views({"k"}), {first[0].put_id}),
              Each(ErrorCode::OBJECT_NOT_FOUND));
  EXPECT_EQ(Snap(), snap);
  EXPECT_EQ(Exist("k"), ErrorCode::OBJECT_NOT_FOUND);  // still the second writer's, in flight
  EXPECT_THAT(*master_->BatchPutEnd(Views({"k"}), {second[0].put_id}), Each(ErrorCode::OK));
  // Once complete, the stale writer's put-end learns the object exists.
  EXPECT_THAT(*master_->BatchPutEnd(Views({"k"}), {first[0].put_id}),
              Each(ErrorCode::OBJECT_ALREADY_EXISTS));
  EXPECT_EQ(ToErrorCode(master_->BatchPutEnd(Views({"k", "j"}), {1}).status()),
            ErrorCode::INVALID_PARAMS);
  ExpectInvariants();
}

// Replicas name the process that mounted their segment, so a reader can refuse a replica of an
// earlier incarnation of the same segment name (restarted at the same addresses).
TEST_F(MasterServiceTest, ReplicasCarryTheirSegmentsInstance) {
  ASSERT_TRUE(master_->MountSegment(kClientA, {"host-a:1", kBaseA, 64 * kMiB, 77}).ok());
  ASSERT_EQ(Put("k", kMiB), ErrorCode::OK);
  ASSERT_EQ(Get("k").replicas.size(), 1u);
  EXPECT_EQ(Get("k").replicas[0].segment_instance, 77u);
  // The restarted process mounts the same name and base with another instance: the old object
  // is gone and new ones carry the new instance.
  ASSERT_TRUE(master_->MountSegment(kClientB, {"host-a:1", kBaseA, 64 * kMiB, 78}).ok());
  EXPECT_EQ(Exist("k"), ErrorCode::OBJECT_NOT_FOUND);
  ASSERT_EQ(Put("k2", kMiB), ErrorCode::OK);
  EXPECT_EQ(Get("k2").replicas[0].segment_instance, 78u);
  ExpectInvariants();
}

// The same owner remounting the same memory under a newer instance (it fenced its inbound writes;
// a process's instances only grow) replaces the old record: replicas naming the old instance
// could not be served any more. The same or an older instance is a no-op: a repeated remount
// whose first answer was lost, or a mount delivered late (found by VOPR seed 270).
TEST_F(MasterServiceTest, RemountUnderANewInstanceReplacesTheSegment) {
  ASSERT_TRUE(master_->MountSegment(kClientA, {"host-a:1", kBaseA, 64 * kMiB, 77}).ok());
  ASSERT_EQ(Put("k", kMiB), ErrorCode::OK);
  ASSERT_TRUE(master_->RemountSegment(kClientA, {{"host-a:1", kBaseA, 64 * kMiB, 77}}).ok());
  EXPECT_EQ(Exist("k"), ErrorCode::OK) << "a repeated remount dropped the segment";
  ASSERT_TRUE(master_->RemountSegment(kClientA, {{"host-a:1", kBaseA, 64 * kMiB, 78}}).ok());
  EXPECT_EQ(Exist("k"), ErrorCode::OBJECT_NOT_FOUND);
  ASSERT_EQ(Put("k2", kMiB), ErrorCode::OK);
  EXPECT_EQ(Get("k2").replicas[0].segment_instance, 78u) << "still mounted under the old instance";
  // A late repeat of the earlier mount (its RPC delayed past the remount) changes nothing.
  ASSERT_TRUE(master_->MountSegment(kClientA, {"host-a:1", kBaseA, 64 * kMiB, 77}).ok());
  EXPECT_EQ(Exist("k2"), ErrorCode::OK);
  EXPECT_EQ(Get("k2").replicas[0].segment_instance, 78u) << "a late mount took the segment back";
  ExpectInvariants();
}

TEST_F(MasterServiceTest, ObjectsAreImmutable) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  ASSERT_EQ(Put("k", 1 * kMiB), ErrorCode::OK);
  const ObjectReplicas before = Get("k");
  const Snapshot snap = Snap();
  EXPECT_EQ(PutStartOne("k", 2 * kMiB), ErrorCode::OBJECT_ALREADY_EXISTS);
  EXPECT_EQ(Snap(), snap);
  EXPECT_EQ(Get("k").replicas, before.replicas);
  EXPECT_EQ(Get("k").size, 1 * kMiB);

  // While the first put is still PROCESSING (also a duplicate inside one batch) a second writer
  // is told the object is not ready, so it can wait rather than report a put nobody can read.
  ASSERT_EQ(PutStartOne("p", kMiB), ErrorCode::OK);
  EXPECT_EQ(PutStartOne("p", kMiB), ErrorCode::REPLICA_IS_NOT_READY);
  std::vector<ObjectReplicas> dup = PutStart({"d", "d"}, kMiB);
  EXPECT_EQ(dup[0].error, ErrorCode::OK);
  EXPECT_EQ(dup[1].error, ErrorCode::REPLICA_IS_NOT_READY);
  EXPECT_EQ(master_->GetMetrics().put_start_already_exists, 3u);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, PutEndTransitions) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  EXPECT_THAT(*master_->BatchPutEnd(Views({"missing"})), ElementsAre(ErrorCode::OBJECT_NOT_FOUND));
  ASSERT_EQ(Put("k", kMiB), ErrorCode::OK);
  // Ending a complete object again is harmless.
  EXPECT_THAT(*master_->BatchPutEnd(Views({"k"})), ElementsAre(ErrorCode::OK));
  EXPECT_EQ(master_->GetMetrics().processing_objects, 0u);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, RevokeFreesAProcessingObjectOnly) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  ASSERT_EQ(PutStartOne("k", 4 * kMiB), ErrorCode::OK);
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, 4 * kMiB);
  EXPECT_EQ(Revoke("k"), ErrorCode::OK);
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, 0u);
  EXPECT_EQ(master_->GetMetrics().objects, 0u);
  EXPECT_EQ(Exist("k"), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(Revoke("k"), ErrorCode::OBJECT_NOT_FOUND);
  // The key is free again.
  ASSERT_EQ(Put("k", 4 * kMiB), ErrorCode::OK);
  EXPECT_EQ(Revoke("k"), ErrorCode::INVALID_WRITE);
  EXPECT_EQ(Exist("k"), ErrorCode::OK);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, AbandonedPutIsDiscardedAndItsSpaceReleasedLater) {
  MasterServiceOptions options = Options();
  options.put_start_discard_timeout = absl::Seconds(30);
  options.put_start_release_timeout = absl::Seconds(600);
  Reset(options);
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  ASSERT_EQ(PutStartOne("abandoned", 4 * kMiB), ErrorCode::OK);

  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(master_->Tick().discarded_puts, 0u);
  EXPECT_EQ(Get("abandoned").error, ErrorCode::REPLICA_IS_NOT_READY);

  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(master_->Tick().discarded_puts, 1u);
  EXPECT_EQ(Get("abandoned").error, ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(master_->GetMetrics().processing_objects, 0u);
  // A late writer may still be writing: the space stays reserved until the release timeout.
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, 4 * kMiB);
  EXPECT_EQ(master_->GetMetrics().discarded_bytes, 4 * kMiB);
  // Its PutEnd finds nothing.
  EXPECT_THAT(*master_->BatchPutEnd(Views({"abandoned"})),
              ElementsAre(ErrorCode::OBJECT_NOT_FOUND));
  // The key can be put again at once, in other space.
  std::vector<ObjectReplicas> again = PutStart({"abandoned"}, 4 * kMiB);
  ASSERT_EQ(again[0].error, ErrorCode::OK);
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, 8 * kMiB);
  ExpectInvariants();

  clock_.Advance(absl::Seconds(600 - 31));
  TickReport report = master_->Tick();
  EXPECT_EQ(report.released_bytes, 4 * kMiB);
  // The new put of the same key is itself abandoned by now (over 30 s), so it is discarded too.
  EXPECT_EQ(report.discarded_puts, 1u);
  EXPECT_EQ(master_->GetMetrics().discarded_bytes, 4 * kMiB);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, PutStartReplacesAnAbandonedPutOfTheSameKey) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  ASSERT_EQ(PutStartOne("k", kMiB), ErrorCode::OK);
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(PutStartOne("k", kMiB), ErrorCode::REPLICA_IS_NOT_READY);
  clock_.Advance(absl::Seconds(21));
  EXPECT_EQ(PutStartOne("k", kMiB), ErrorCode::OK);
  EXPECT_EQ(master_->GetMetrics().discarded_puts, 1u);
  EXPECT_EQ(master_->GetMetrics().objects, 1u);
  ExpectInvariants();
}

// ---------------------------------------------------------------------------------------------
// Leases and removal

TEST_F(MasterServiceTest, ExistAndGetGrantLeasesThatBlockRemoveUntilExpiry) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  ASSERT_EQ(Put("a", kMiB), ErrorCode::OK);
  ASSERT_EQ(Put("b", kMiB), ErrorCode::OK);
  // Never read: no lease.
  EXPECT_EQ(Remove("a"), ErrorCode::OK);

  ASSERT_EQ(Put("a", kMiB), ErrorCode::OK);
  EXPECT_EQ(Exist("a"), ErrorCode::OK);
  auto list = master_->BatchGetReplicaList(Views({"b"}));
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->lease_ttl, absl::Milliseconds(10000));

  clock_.Advance(absl::Milliseconds(9999));
  EXPECT_EQ(Remove("a"), ErrorCode::OBJECT_HAS_LEASE);
  EXPECT_EQ(Remove("b"), ErrorCode::OBJECT_HAS_LEASE);
  EXPECT_EQ(Exist("a"), ErrorCode::OK);  // renews a's lease for another 10 s
  clock_.Advance(absl::Milliseconds(2));
  EXPECT_EQ(Remove("a"), ErrorCode::OBJECT_HAS_LEASE);
  EXPECT_EQ(Remove("b"), ErrorCode::OK);
  EXPECT_EQ(Remove("a", /*force=*/true), ErrorCode::OK);
  EXPECT_EQ(master_->GetMetrics().objects, 0u);
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, 0u);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, RemoveOfMissingAndProcessingObjects) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  EXPECT_EQ(Remove("missing"), ErrorCode::OBJECT_NOT_FOUND);
  ASSERT_EQ(PutStartOne("p", kMiB), ErrorCode::OK);
  EXPECT_EQ(Remove("p"), ErrorCode::REPLICA_IS_NOT_READY);
  EXPECT_EQ(Remove("p", /*force=*/true), ErrorCode::REPLICA_IS_NOT_READY);
  EXPECT_EQ(master_->GetMetrics().processing_objects, 1u);
}

TEST_F(MasterServiceTest, RemoveByRegexAndRemoveAllReturnCounts) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Put(absl::StrCat("model1_", i, "_k"), kKiB), ErrorCode::OK);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Put(absl::StrCat("model2_", i, "_v"), kKiB), ErrorCode::OK);
  ASSERT_EQ(PutStartOne("model1_processing", kKiB), ErrorCode::OK);
  EXPECT_EQ(Exist("model1_0_k"), ErrorCode::OK);  // leased

  EXPECT_EQ(*master_->RemoveByRegex("^model1_", false), 4u);
  EXPECT_EQ(Exist("model1_1_k"), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(*master_->RemoveByRegex("^model1_", true), 1u);  // the leased one
  EXPECT_EQ(*master_->RemoveByRegex("_v$", false), 3u);
  EXPECT_EQ(*master_->RemoveByRegex("nothing matches", false), 0u);
  auto bad = master_->RemoveByRegex("(unclosed", false);
  EXPECT_EQ(ToErrorCode(bad.status()), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->RemoveByRegex(std::string(5000, 'a'), false).status()),
            ErrorCode::INVALID_PARAMS);

  for (int i = 0; i < 4; ++i) ASSERT_EQ(Put(absl::StrCat("x", i), kKiB), ErrorCode::OK);
  EXPECT_EQ(Exist("x0"), ErrorCode::OK);
  EXPECT_EQ(*master_->RemoveAll(false), 3u);
  EXPECT_EQ(*master_->RemoveAll(true), 1u);
  EXPECT_EQ(*master_->RemoveAll(true), 0u);
  // PROCESSING objects belong to their writer and are never removed in bulk.
  EXPECT_EQ(master_->GetMetrics().objects, 1u);
  EXPECT_EQ(master_->GetMetrics().removed_objects, 12u);
  ExpectInvariants();
}

// ---------------------------------------------------------------------------------------------
// Eviction

class EvictionTest : public MasterServiceTest {
 protected:
  static constexpr int kSlots = 100;
  static constexpr uint64_t kObject = 64 * kKiB;

  // A segment of 100 objects; puts `n` objects key0..key{n-1}, one per millisecond (key0 oldest).
  void Fill(int n, const ReplicateConfig& config = {}) {
    Mount(kClientA, "host-a:1", kBaseA, kSlots * kObject);
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(Put(Key(i), kObject, config), ErrorCode::OK) << i;
      clock_.Advance(absl::Milliseconds(1));
    }
  }
  static std::string Key(int i) { return absl::StrCat("key", i); }
  // Indexes of key0..key{n-1} that are gone (the probe leases the others).
  std::vector<int> Missing(int n) {
    std::vector<int> missing;
    for (int i = 0; i < n; ++i) {
      if (Exist(Key(i)) != ErrorCode::OK) missing.push_back(i);
    }
    return missing;
  }
};

TEST_F(EvictionTest, NothingHappensBelowTheWatermark) {
  Fill(89);
  EXPECT_EQ(master_->Tick().evicted_objects, 0u);
  EXPECT_EQ(master_->GetMetrics().objects, 89u);
}

TEST_F(EvictionTest, HighWatermarkEvictsTheLeastRecentlyUsedFivePercent) {
  Fill(90);
  // key3 and key5 are read: now the most recently used.
  EXPECT_EQ(Exist(Key(3)), ErrorCode::OK);
  EXPECT_EQ(Get(Key(5)).error, ErrorCode::OK);
  clock_.Advance(absl::Seconds(11));  // leases over; recency remains
  TickReport report = master_->Tick();
  // ceil(0.05 * 90) = 5 objects: key0, 1, 2, 4, 6.
  EXPECT_EQ(report.evicted_objects, 5u);
  EXPECT_THAT(Missing(90), ElementsAre(0, 1, 2, 4, 6));
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, 85 * kObject);
  EXPECT_EQ(master_->GetMetrics().evicted_objects, 5u);
  ExpectInvariants();
}

TEST_F(EvictionTest, LeasedObjectsAreNotEvicted) {
  MasterServiceOptions options = Options();
  options.eviction_ratio = 1.0;
  Reset(options);
  Fill(95);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Exist(Key(i)), ErrorCode::OK);
  EXPECT_EQ(master_->Tick().evicted_objects, 85u);
  EXPECT_EQ(master_->GetMetrics().objects, 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Get(Key(i)).error, ErrorCode::OK);
  ExpectInvariants();
}

TEST_F(EvictionTest, UnpinnedGoBeforeSoftPinnedAndProcessingStays) {
  MasterServiceOptions options = Options();
  options.eviction_ratio = 0.5;
  Reset(options);
  Mount(kClientA, "host-a:1", kBaseA, kSlots * kObject);
  ReplicateConfig soft;
  soft.with_soft_pin = true;
  // Oldest first: 50 soft-pinned, then 40 unpinned, then 5 PROCESSING.
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Put(absl::StrCat("soft", i), kObject, soft), ErrorCode::OK);
    clock_.Advance(absl::Milliseconds(1));
  }
  for (int i = 0; i < 40; ++i) ASSERT_EQ(Put(absl::StrCat("free", i), kObject), ErrorCode::OK);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(PutStartOne(absl::StrCat("proc", i), kObject), ErrorCode::OK);
  // 90 evictable, half is 45: all 40 unpinned (though newer), then the 5 oldest soft-pinned.
  EXPECT_EQ(master_->Tick().evicted_objects, 45u);
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(Exist(absl::StrCat("free", i)), ErrorCode::OBJECT_NOT_FOUND);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(Exist(absl::StrCat("soft", i)), ErrorCode::OBJECT_NOT_FOUND);
  for (int i = 5; i < 50; ++i) EXPECT_EQ(Exist(absl::StrCat("soft", i)), ErrorCode::OK);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Get(absl::StrCat("proc", i)).error, ErrorCode::REPLICA_IS_NOT_READY);
  }
  ExpectInvariants();
}

TEST_F(EvictionTest, HardPinnedAndProcessingAreNeverEvicted) {
  MasterServiceOptions options = Options();
  options.eviction_ratio = 1.0;
  Reset(options);
  Mount(kClientA, "host-a:1", kBaseA, kSlots * kObject);
  ReplicateConfig hard;
  hard.with_hard_pin = true;
  for (int i = 0; i < 90; ++i)
    ASSERT_EQ(Put(absl::StrCat("hard", i), kObject, hard), ErrorCode::OK);
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(PutStartOne(absl::StrCat("proc", i), kObject), ErrorCode::OK);
  EXPECT_EQ(master_->Tick().evicted_objects, 0u);
  EXPECT_EQ(PutStartOne("more", kObject), ErrorCode::NO_AVAILABLE_HANDLE);
  EXPECT_EQ(master_->GetMetrics().objects, 100u);
  // Hard-pinned objects can still be removed explicitly.
  EXPECT_EQ(Remove("hard0"), ErrorCode::OK);
  EXPECT_EQ(Put("more", kObject), ErrorCode::OK);
}

TEST_F(EvictionTest, EqualRecencyIsBrokenByKey) {
  Mount(kClientA, "host-a:1", kBaseA, kSlots * kObject);
  // All put at the same instant.
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Put(absl::StrCat("k", 100 + i), kObject), ErrorCode::OK);
  EXPECT_EQ(master_->Tick().evicted_objects, 5u);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(Exist(absl::StrCat("k", 100 + i)), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(Exist("k105"), ErrorCode::OK);
}

TEST_F(EvictionTest, FailedAllocationEvictsAndRetries) {
  Fill(100);
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, 100 * kObject);
  EXPECT_EQ(Put("newcomer", kObject), ErrorCode::OK);
  EXPECT_EQ(Exist("key0"), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(Exist("newcomer"), ErrorCode::OK);
  EXPECT_EQ(master_->GetMetrics().eviction_runs, 1u);
  ExpectInvariants();
}

TEST_F(EvictionTest, NoSpaceWhenEverythingIsLeased) {
  Fill(100);
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back(Key(i));
  EXPECT_THAT(*master_->BatchExistKey(Views(keys)), Each(ErrorCode::OK));
  const Snapshot before = Snap();
  // A batch of 3 runs at most one eviction.
  std::vector<ObjectReplicas> r = PutStart({"x", "y", "z"}, kObject);
  for (const ObjectReplicas& o : r) EXPECT_EQ(o.error, ErrorCode::NO_AVAILABLE_HANDLE);
  EXPECT_EQ(master_->GetMetrics().eviction_runs, 1u);
  EXPECT_EQ(Snap(), before);
  EXPECT_EQ(master_->GetMetrics().put_start_no_space, 3u);
  clock_.Advance(absl::Seconds(11));
  EXPECT_EQ(Put("x", kObject), ErrorCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Placement

TEST_F(MasterServiceTest, ReplicasAreOnDistinctSegmentNames) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  Mount(kClientA, "host-a:1", kBaseA + 64 * kMiB, 64 * kMiB);  // same name, second range
  Mount(kClientB, "host-b:1", kBaseB, 64 * kMiB);
  ReplicateConfig two;
  two.replica_num = 2;
  for (int i = 0; i < 20; ++i) {
    std::vector<ObjectReplicas> r = PutStart({absl::StrCat("k", i)}, kMiB, two);
    ASSERT_EQ(r[0].error, ErrorCode::OK);
    ASSERT_EQ(r[0].replicas.size(), 2u);
    EXPECT_NE(r[0].replicas[0].segment_name, r[0].replicas[1].segment_name);
  }
  ReplicateConfig three;
  three.replica_num = 3;
  const Snapshot before = Snap();
  EXPECT_EQ(PutStartOne("three", kMiB, three), ErrorCode::NO_AVAILABLE_HANDLE);
  EXPECT_EQ(Snap(), before);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, NewObjectsSpreadAcrossSegments) {
  const std::vector<std::string> names = {"h1:1", "h2:1", "h3:1", "h4:1"};
  for (size_t i = 0; i < names.size(); ++i) {
    Mount(ClientId{10 + i, 1}, names[i], kBaseA, 1024 * kMiB);
  }
  std::vector<std::string> keys;
  for (int i = 0; i < 400; ++i) keys.push_back(absl::StrCat("k", i));
  PutStart(keys, kMiB);
  for (const SegmentStatus& s : master_->ListSegments()) {
    EXPECT_GE(s.allocated, 80 * kMiB) << s.segment.name;
    EXPECT_LE(s.allocated, 120 * kMiB) << s.segment.name;
  }
  // A segment that joins late, empty, takes more new objects than any other, but not all of them.
  std::vector<SegmentStatus> before = master_->ListSegments();
  Mount(ClientId{20, 1}, "h5:1", kBaseA, 1024 * kMiB);
  keys.clear();
  for (int i = 0; i < 100; ++i) keys.push_back(absl::StrCat("late", i));
  PutStart(keys, kMiB);
  uint64_t late_share = 0;
  uint64_t max_other_share = 0;
  for (const SegmentStatus& s : master_->ListSegments()) {
    if (s.segment.name == "h5:1") {
      late_share = s.allocated;
      continue;
    }
    for (const SegmentStatus& b : before) {
      if (b.segment.name == s.segment.name) {
        max_other_share = std::max(max_other_share, s.allocated - b.allocated);
      }
    }
  }
  EXPECT_GT(late_share, max_other_share);
  EXPECT_LT(late_share, 100 * kMiB);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, PreferredSegmentsComeFirst) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  Mount(kClientB, "host-b:1", kBaseB, 64 * kMiB);
  Mount(kClientC, "host-c:1", kBaseC, 64 * kMiB);
  ReplicateConfig config;
  config.preferred_segments = {"host-c:1"};
  for (int i = 0; i < 10; ++i) {
    std::vector<ObjectReplicas> r = PutStart({absl::StrCat("k", i)}, kMiB, config);
    ASSERT_EQ(r[0].error, ErrorCode::OK);
    EXPECT_EQ(r[0].replicas[0].segment_name, "host-c:1");
  }
  // A preferred segment that is full or unknown falls back to the others.
  config.preferred_segments = {"unknown:1"};
  EXPECT_EQ(PutStartOne("fallback", kMiB, config), ErrorCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Segments and client liveness

TEST_F(MasterServiceTest, MountIsIdempotentAndListed) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  std::vector<SegmentStatus> segments = master_->ListSegments();
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(segments[0].segment, (SegmentDesc{"host-a:1", kBaseA, 64 * kMiB}));
  EXPECT_EQ(segments[0].owner, kClientA);
  EXPECT_EQ(master_->GetMetrics().capacity_bytes, 64 * kMiB);
  EXPECT_EQ(master_->GetMetrics().clients, 1u);
}

TEST_F(MasterServiceTest, UnmountDropsReplicasAndObjectsLeftWithNone) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  Mount(kClientB, "host-b:1", kBaseB, 64 * kMiB);
  ReplicateConfig two;
  two.replica_num = 2;
  ASSERT_EQ(Put("both", kMiB, two), ErrorCode::OK);
  ReplicateConfig on_a;
  on_a.preferred_segments = {"host-a:1"};
  ASSERT_EQ(Put("only-a", kMiB, on_a), ErrorCode::OK);
  EXPECT_EQ(Exist("only-a"), ErrorCode::OK);  // leased: unmount drops it anyway

  ASSERT_TRUE(master_->UnmountSegment(kClientA, "host-a:1", kBaseA).ok());
  EXPECT_EQ(Exist("only-a"), ErrorCode::OBJECT_NOT_FOUND);
  ObjectReplicas both = Get("both");
  ASSERT_EQ(both.error, ErrorCode::OK);
  ASSERT_EQ(both.replicas.size(), 1u);
  EXPECT_EQ(both.replicas[0].segment_name, "host-b:1");
  EXPECT_EQ(master_->GetMetrics().capacity_bytes, 64 * kMiB);
  EXPECT_EQ(master_->GetMetrics().allocated_bytes, kMiB);
  EXPECT_EQ(master_->GetMetrics().dropped_replicas, 2u);
  EXPECT_EQ(ToErrorCode(master_->UnmountSegment(kClientA, "host-a:1", kBaseA)),
            ErrorCode::SEGMENT_NOT_FOUND);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, AStallOfTheMasterItselfDoesNotExpireItsClients) {
  // SIGSTOP of the master for longer than client_ttl: nobody could heartbeat meanwhile, so the
  // clients are not expired when it resumes (Mooncake #3937); a client that stays silent after
  // the stall still is.
  MasterServiceOptions o;  // client_ttl 10 s
  o.tick_stall_threshold = absl::Seconds(1);
  Reset(o);
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  ASSERT_EQ(Put("kept", kMiB), ErrorCode::OK);
  EXPECT_EQ(master_->Tick().expired_clients, 0u);
  clock_.Advance(absl::Seconds(30));  // the master was stopped
  EXPECT_EQ(master_->Tick().expired_clients, 0u);
  EXPECT_THAT(*master_->BatchExistKey(Views({"kept"})), Each(ErrorCode::OK));
  for (int i = 0; i < 12; ++i) {  // running again: A stays silent for 12 s
    clock_.Advance(absl::Seconds(1));
    master_->Tick();
  }
  EXPECT_EQ(master_->GetMetrics().expired_clients, 1u);
}

TEST_F(MasterServiceTest, SilentClientIsUnmountedAndToldToRemount) {
  Reset(MasterServiceOptions{});  // client_ttl 10 s
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  Mount(kClientB, "host-b:1", kBaseB, 64 * kMiB);
  ReplicateConfig on_a;
  on_a.preferred_segments = {"host-a:1"};
  ASSERT_EQ(Put("on-a", kMiB, on_a), ErrorCode::OK);
  ASSERT_EQ(PutStartOne("writing-on-a", kMiB, on_a), ErrorCode::OK);
  ReplicateConfig on_b;
  on_b.preferred_segments = {"host-b:1"};
  ASSERT_EQ(Put("on-b", kMiB, on_b), ErrorCode::OK);

  // B heartbeats every 4 s; A is silent.
  for (int i = 0; i < 2; ++i) {
    clock_.Advance(absl::Seconds(4));
    ASSERT_FALSE(master_->Heartbeat(kClientB)->need_remount);
    EXPECT_EQ(master_->Tick().expired_clients, 0u);
  }
  clock_.Advance(absl::Seconds(2));  // A: 10 s, not over the TTL yet
  EXPECT_EQ(master_->Tick().expired_clients, 0u);
  EXPECT_EQ(Exist("on-a"), ErrorCode::OK);
  clock_.Advance(absl::Seconds(1));
  ASSERT_FALSE(master_->Heartbeat(kClientB)->need_remount);
  TickReport report = master_->Tick();
  EXPECT_EQ(report.expired_clients, 1u);
  EXPECT_EQ(report.unmounted_segments, 1u);

  // Nothing on A's segment is visible or handed out any more, even though on-a was leased.
  EXPECT_EQ(Exist("on-a"), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(Get("on-a").error, ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(Get("writing-on-a").error, ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(Exist("on-b"), ErrorCode::OK);
  for (int i = 0; i < 20; ++i) {
    std::vector<ObjectReplicas> r = PutStart({absl::StrCat("new", i)}, kMiB, on_a);
    ASSERT_EQ(r[0].error, ErrorCode::OK);
    EXPECT_EQ(r[0].replicas[0].segment_name, "host-b:1");
  }
  std::vector<SegmentStatus> segments = master_->ListSegments();
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(segments[0].segment.name, "host-b:1");

  // A comes back: told to remount, then it serves again.
  auto hb = master_->Heartbeat(kClientA);
  ASSERT_TRUE(hb.ok());
  EXPECT_TRUE(hb->need_remount);
  EXPECT_EQ(ToErrorCode(master_->UnmountSegment(kClientA, "host-a:1", kBaseA)),
            ErrorCode::CLIENT_NOT_FOUND);
  ASSERT_TRUE(master_->RemountSegment(kClientA, {{"host-a:1", kBaseA, 64 * kMiB}}).ok());
  EXPECT_FALSE(master_->Heartbeat(kClientA)->need_remount);
  EXPECT_EQ(Put("on-a", kMiB, on_a), ErrorCode::OK);
  EXPECT_EQ(Get("on-a").replicas[0].segment_name, "host-a:1");
  EXPECT_EQ(master_->GetMetrics().expired_clients, 1u);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, RemountWithoutSegmentsRegistersTheClient) {
  Reset(MasterServiceOptions{});  // client_ttl 10 s
  EXPECT_TRUE(master_->Heartbeat(kClientA)->need_remount);
  ASSERT_TRUE(master_->RemountSegment(kClientA, {}).ok());
  EXPECT_FALSE(master_->Heartbeat(kClientA)->need_remount);
  clock_.Advance(absl::Seconds(11));
  master_->Tick();
  EXPECT_TRUE(master_->Heartbeat(kClientA)->need_remount);
}

TEST_F(MasterServiceTest, ANewOwnerOfASegmentNameReplacesTheOldOne) {
  Mount(kClientA, "host:1", kBaseA, 64 * kMiB);
  ASSERT_EQ(Put("old", kMiB), ErrorCode::OK);
  // The process restarted with a new client id but the same transfer-engine name.
  Mount(kClientB, "host:1", kBaseB, 32 * kMiB);
  EXPECT_EQ(Exist("old"), ErrorCode::OBJECT_NOT_FOUND);
  std::vector<SegmentStatus> segments = master_->ListSegments();
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(segments[0].owner, kClientB);
  EXPECT_EQ(master_->GetMetrics().capacity_bytes, 32 * kMiB);
  ExpectInvariants();
}

// ---------------------------------------------------------------------------------------------
// Bad arguments: the right code, and nothing changes.

TEST_F(MasterServiceTest, BadKeysAndSizes) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  ASSERT_EQ(Put("good", kMiB), ErrorCode::OK);
  const std::string too_long(kMaxKeyLength + 1, 'k');
  const Snapshot before = Snap();

  auto exist = master_->BatchExistKey(Views({"", too_long, "good"}));
  EXPECT_THAT(*exist, ElementsAre(ErrorCode::INVALID_KEY, ErrorCode::INVALID_KEY, ErrorCode::OK));
  auto list = master_->BatchGetReplicaList(Views({"", too_long}));
  EXPECT_EQ(list->objects[0].error, ErrorCode::INVALID_KEY);
  EXPECT_EQ(list->objects[1].error, ErrorCode::INVALID_KEY);
  EXPECT_THAT(*master_->BatchPutEnd(Views({""})), ElementsAre(ErrorCode::INVALID_KEY));
  EXPECT_THAT(*master_->BatchPutRevoke(Views({""})), ElementsAre(ErrorCode::INVALID_KEY));
  EXPECT_THAT(*master_->BatchRemove(Views({""}), true), ElementsAre(ErrorCode::INVALID_KEY));

  std::vector<uint64_t> sizes = {kMiB, kMiB, 0, UINT64_MAX, kMaxObjectSize + 1, 65 * kMiB};
  auto started = master_->BatchPutStart(Views({"", too_long, "zero", "huge", "too-big", "bigger"}),
                                        sizes, ReplicateConfig{});
  ASSERT_TRUE(started.ok());
  EXPECT_EQ((*started)[0].error, ErrorCode::INVALID_KEY);
  EXPECT_EQ((*started)[1].error, ErrorCode::INVALID_KEY);
  EXPECT_EQ((*started)[2].error, ErrorCode::INVALID_PARAMS);
  EXPECT_EQ((*started)[3].error, ErrorCode::INVALID_PARAMS);
  EXPECT_EQ((*started)[4].error, ErrorCode::INVALID_PARAMS);
  // Larger than every segment: no space, and no pointless eviction.
  EXPECT_EQ((*started)[5].error, ErrorCode::NO_AVAILABLE_HANDLE);
  EXPECT_EQ(master_->GetMetrics().eviction_runs, 0u);
  EXPECT_EQ(Snap(), before);
  EXPECT_EQ(Exist("good"), ErrorCode::OK);
  ExpectInvariants();
}

TEST_F(MasterServiceTest, BadBatchesAreRejectedWhole) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  const Snapshot before = Snap();
  // Mismatched lengths.
  std::vector<uint64_t> one_size = {kMiB};
  auto r = master_->BatchPutStart(Views({"a", "b"}), one_size, ReplicateConfig{});
  EXPECT_EQ(ToErrorCode(r.status()), ErrorCode::INVALID_PARAMS);
  // Bad replicate configs.
  for (int n : {0, -1, kMaxReplicaNum + 1}) {
    ReplicateConfig config;
    config.replica_num = n;
    auto bad = master_->BatchPutStart(Views({"a"}), one_size, config);
    EXPECT_EQ(ToErrorCode(bad.status()), ErrorCode::INVALID_PARAMS) << n;
  }
  // Too many keys.
  std::vector<std::string> many(kMaxBatchKeys + 1, "k");
  std::vector<uint64_t> many_sizes(many.size(), 1);
  EXPECT_EQ(ToErrorCode(master_->BatchExistKey(Views(many)).status()), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->BatchGetReplicaList(Views(many)).status()),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->BatchPutStart(Views(many), many_sizes, {}).status()),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->BatchPutEnd(Views(many)).status()), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->BatchPutRevoke(Views(many)).status()), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->BatchRemove(Views(many), false).status()),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(Snap(), before);
  EXPECT_EQ(Exist("a"), ErrorCode::OBJECT_NOT_FOUND);
}

TEST_F(MasterServiceTest, BadSegmentsAndClients) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  const Snapshot before = Snap();
  const ClientId invalid{0, 0};
  EXPECT_EQ(ToErrorCode(master_->MountSegment(invalid, {"x:1", kBaseB, kMiB})),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->MountSegment(kClientB, {"", kBaseB, kMiB})),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->MountSegment(kClientB, {"x:1", kBaseB, 0})),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->MountSegment(kClientB, {"x:1", UINT64_MAX - 10, kMiB})),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->MountSegment(
                kClientB, {std::string(kMaxSegmentNameLength + 1, 'n'), kBaseB, kMiB})),
            ErrorCode::INVALID_PARAMS);
  // Overlapping a different range of the same client and name; a different size at the same base.
  EXPECT_EQ(ToErrorCode(master_->MountSegment(kClientA, {"host-a:1", kBaseA + kMiB, 64 * kMiB})),
            ErrorCode::SEGMENT_ALREADY_EXISTS);
  EXPECT_EQ(ToErrorCode(master_->MountSegment(kClientA, {"host-a:1", kBaseA, 32 * kMiB})),
            ErrorCode::SEGMENT_ALREADY_EXISTS);
  // Remount with one bad segment changes nothing.
  EXPECT_EQ(ToErrorCode(master_->RemountSegment(kClientB, {{"x:1", kBaseB, kMiB}, {"y:1", 0, 0}})),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->RemountSegment(invalid, {})), ErrorCode::INVALID_PARAMS);
  // Unknown client, unknown segment, someone else's segment.
  EXPECT_EQ(ToErrorCode(master_->UnmountSegment(kClientB, "host-a:1", kBaseA)),
            ErrorCode::CLIENT_NOT_FOUND);
  EXPECT_EQ(ToErrorCode(master_->UnmountSegment(kClientA, "host-a:1", kBaseA + 1)),
            ErrorCode::SEGMENT_NOT_FOUND);
  EXPECT_EQ(ToErrorCode(master_->UnmountSegment(kClientA, "nope", kBaseA)),
            ErrorCode::SEGMENT_NOT_FOUND);
  EXPECT_EQ(ToErrorCode(master_->UnmountSegment(invalid, "host-a:1", kBaseA)),
            ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(master_->Heartbeat(invalid).status()), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(Snap(), before);
  ASSERT_TRUE(master_->MountSegment(kClientB, {"host-b:1", kBaseB, kMiB}).ok());
  EXPECT_EQ(ToErrorCode(master_->UnmountSegment(kClientB, "host-a:1", kBaseA)),
            ErrorCode::SEGMENT_NOT_FOUND);
  EXPECT_EQ(master_->ListSegments().size(), 2u);
}

TEST_F(MasterServiceTest, PutWithNoSegmentsHasNoSpace) {
  EXPECT_EQ(PutStartOne("k", kMiB), ErrorCode::NO_AVAILABLE_HANDLE);
  EXPECT_EQ(master_->GetMetrics().objects, 0u);
}

TEST(MasterServiceOptionsTest, OutOfRangeOptionsAreNamed) {
  MasterServiceOptions o;
  EXPECT_TRUE(ValidateMasterServiceOptions(o).ok());
  o.eviction_high_watermark_ratio = 1.5;
  EXPECT_THAT(std::string(ValidateMasterServiceOptions(o).message()),
              ::testing::HasSubstr("eviction_high_watermark_ratio"));
  o = {};
  o.eviction_ratio = 0;
  EXPECT_FALSE(ValidateMasterServiceOptions(o).ok());
  o = {};
  o.default_kv_lease_ttl = absl::ZeroDuration();
  EXPECT_FALSE(ValidateMasterServiceOptions(o).ok());
  o = {};
  o.client_ttl = absl::Seconds(-1);
  EXPECT_FALSE(ValidateMasterServiceOptions(o).ok());
  o = {};
  o.put_start_release_timeout = absl::Seconds(1);
  EXPECT_FALSE(ValidateMasterServiceOptions(o).ok());
}

TEST_F(MasterServiceTest, CountersCountKeysAndCalls) {
  Mount(kClientA, "host-a:1", kBaseA, 64 * kMiB);
  PutStart({"a", "b", "c"}, kKiB);
  (void)master_->BatchPutEnd(Views({"a"}));
  (void)master_->BatchPutEnd(Views({"b"}));
  (void)master_->BatchPutRevoke(Views({"c"}));
  (void)master_->BatchExistKey(Views({"a", "b", "c", "d"}));
  (void)master_->BatchGetReplicaList(Views({"a", "x"}));
  (void)master_->Heartbeat(kClientA);
  MasterMetrics m = master_->GetMetrics();
  EXPECT_EQ(m.put_start_keys, 3u);
  EXPECT_EQ(m.put_start_ok, 3u);
  EXPECT_EQ(m.put_end_keys, 2u);
  EXPECT_EQ(m.put_revoke_keys, 1u);
  EXPECT_EQ(m.exist_keys, 4u);
  EXPECT_EQ(m.exist_hits, 2u);
  EXPECT_EQ(m.get_replica_list_keys, 2u);
  EXPECT_EQ(m.get_replica_list_hits, 1u);
  EXPECT_EQ(m.put_start_calls, 1u);
  EXPECT_EQ(m.put_end_calls, 2u);
  EXPECT_EQ(m.put_revoke_calls, 1u);
  EXPECT_EQ(m.exist_calls, 1u);
  EXPECT_EQ(m.get_replica_list_calls, 1u);
  EXPECT_EQ(m.heartbeat_calls, 1u);
  EXPECT_EQ(m.mount_calls, 1u);
  EXPECT_EQ(m.objects, 2u);
  EXPECT_EQ(m.segments, 1u);
}

// ---------------------------------------------------------------------------------------------
// Random operation sequences: accounting holds after every step.

TEST_F(MasterServiceTest, RandomOperationsKeepAccountingExact) {
  MasterServiceOptions options = Options();
  options.put_start_discard_timeout = absl::Seconds(3);
  options.put_start_release_timeout = absl::Seconds(6);
  options.client_ttl = absl::Seconds(5);
  options.default_kv_lease_ttl = absl::Seconds(1);
  Reset(options);
  Rng rng(2024);
  const std::vector<ClientId> clients = {kClientA, kClientB, kClientC};
  const std::vector<std::string> names = {"a:1", "b:1", "c:1"};
  auto key = [&] { return absl::StrCat("key", rng.Uniform(300)); };
  for (int step = 0; step < 3000; ++step) {
    const uint64_t op = rng.Uniform(100);
    const size_t c = rng.Uniform(clients.size());
    if (op < 3) {
      (void)master_->MountSegment(
          clients[c], {names[c], kBaseA + rng.Uniform(2) * 64 * kMiB, (1 + rng.Uniform(8)) * kMiB});
    } else if (op < 5) {
      (void)master_->UnmountSegment(clients[c], names[c], kBaseA + rng.Uniform(2) * 64 * kMiB);
    } else if (op < 30) {
      ReplicateConfig config;
      config.replica_num = 1 + static_cast<int>(rng.Uniform(2));
      config.with_soft_pin = rng.Bernoulli(0.1);
      config.with_hard_pin = rng.Bernoulli(0.05);
      std::vector<std::string> keys = {key(), key(), key()};
      std::vector<uint64_t> sizes = {1 + rng.Uniform(300 * kKiB), 1 + rng.Uniform(300 * kKiB),
                                     1 + rng.Uniform(300 * kKiB)};
      (void)master_->BatchPutStart(Views(keys), sizes, config);
    } else if (op < 55) {
      (void)master_->BatchPutEnd(Views({key(), key()}));
    } else if (op < 60) {
      (void)master_->BatchPutRevoke(Views({key()}));
    } else if (op < 70) {
      (void)master_->BatchExistKey(Views({key(), key()}));
    } else if (op < 80) {
      auto list = master_->BatchGetReplicaList(Views({key()}));
      // Nothing handed out lies outside a mounted segment.
      std::vector<SegmentStatus> segments = master_->ListSegments();
      for (const ObjectReplicas& o : list->objects) {
        for (const ReplicaDesc& r : o.replicas) {
          bool inside = false;
          for (const SegmentStatus& s : segments) {
            inside |= s.segment.name == r.segment_name && r.address >= s.segment.base &&
                      r.address + r.size <= s.segment.base + s.segment.size;
          }
          EXPECT_TRUE(inside) << r.segment_name << " 0x" << std::hex << r.address;
        }
      }
    } else if (op < 85) {
      (void)master_->BatchRemove(Views({key()}), rng.Bernoulli(0.3));
    } else if (op < 87) {
      (void)master_->RemoveByRegex(absl::StrCat("key", rng.Uniform(10), "$"), rng.Bernoulli(0.5));
    } else if (op < 95) {
      (void)master_->Heartbeat(clients[c]);
    } else {
      master_->Tick();
    }
    clock_.Advance(absl::Milliseconds(rng.Uniform(200)));
    absl::Status s = master_->CheckInvariants();
    ASSERT_TRUE(s.ok()) << "step " << step << ": " << s;
    for (const SegmentStatus& seg : master_->ListSegments()) {
      ASSERT_LE(seg.allocated, seg.segment.size);
    }
  }
  EXPECT_GT(master_->GetMetrics().put_start_ok, 100u);
}

// Many threads on different keys, with mounts, unmounts and ticks in between.
TEST_F(MasterServiceTest, ConcurrentBatchesKeepInvariants) {
  Mount(kClientA, "a:1", kBaseA, 256 * kMiB);
  Mount(kClientB, "b:1", kBaseB, 256 * kMiB);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      Rng rng(t);
      for (int round = 0; round < 200; ++round) {
        std::vector<std::string> keys;
        for (int i = 0; i < 16; ++i) keys.push_back(absl::StrCat("t", t, "_", rng.Uniform(500)));
        std::vector<uint64_t> sizes(keys.size(), 64 * kKiB);
        (void)master_->BatchPutStart(Views(keys), sizes, {});
        (void)master_->BatchPutEnd(Views(keys));
        (void)master_->BatchExistKey(Views(keys));
        (void)master_->BatchGetReplicaList(Views(keys));
        (void)master_->BatchRemove(Views(keys), true);
      }
    });
  }
  threads.emplace_back([this] {
    for (int round = 0; round < 50; ++round) {
      (void)master_->MountSegment(kClientC, {"c:1", kBaseC, 64 * kMiB});
      master_->Tick();
      (void)master_->UnmountSegment(kClientC, "c:1", kBaseC);
      (void)master_->Heartbeat(kClientA);
      (void)master_->Heartbeat(kClientB);
    }
  });
  for (std::thread& t : threads) t.join();
  ExpectInvariants();
  EXPECT_EQ(master_->ListSegments().size(), 2u);
}

}  // namespace
}  // namespace mooncake
