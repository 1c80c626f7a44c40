// StoreCore against the real MasterService, with a scripted DataPath (the seam) standing in for
// the transfer engine: what the core does with each kind of transfer failure.
#include "mooncake/store/store_core.h"

#include <vector>

#include "gtest/gtest.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/master/local_master_client.h"
#include "mooncake/master/master_service.h"
#include "mooncake/store/master_channel.h"

namespace mooncake {
namespace {

// Fails every write with `failure`; `fenced` counts FenceInbound calls, each of which renews the
// segment's instance to 100 + fenced.
class FailingDataPath final : public DataPath {
 public:
  explicit FailingDataPath(absl::Status failure) : failure_(std::move(failure)) {}
  const std::string& local_segment() const override { return name_; }
  int Closeness(const std::string&) override { return 2; }
  void Transfer(std::vector<DataRequest> requests,
                std::function<void(std::vector<absl::Status>)> done) override {
    done(std::vector<absl::Status>(requests.size(), failure_));
  }
  uint64_t FenceInbound() override { return 100 + ++fenced; }
  int fenced = 0;

 private:
  const std::string name_ = "writer:1";
  const absl::Status failure_;
};

class StoreCoreTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kObject = 64 << 10;
  StoreCoreTest() : master_(Options(), &clock_), local_(&master_), channel_(&local_) {
    EXPECT_TRUE(master_.MountSegment({9, 9}, {"owner:1", 1 << 20, kObject, 1}).ok());
  }
  static MasterServiceOptions Options() {
    MasterServiceOptions o;
    o.client_ttl = absl::Hours(1);
    o.put_start_release_timeout = absl::Seconds(60);
    return o;
  }
  std::unique_ptr<StoreCore> Core(DataPath* data, SegmentDesc segment = {}) {
    StoreCoreOptions o;
    o.client_id = {1, 2};
    o.segment = segment;
    o.master = &channel_;
    o.data = data;
    o.clock = &clock_;
    o.timer = [](absl::Duration, std::function<void()> fn) { fn(); };
    return std::make_unique<StoreCore>(std::move(o));
  }
  int Put(StoreCore* core, const std::string& key) {
    int rc = 1;
    core->BatchPut({key}, {{{buf_.data(), kObject}}}, ReplicateConfig(),
                   [&](std::vector<int> r) { rc = r[0]; });
    return rc;
  }

  ManualClock clock_{1'000'000'000};
  MasterService master_;
  LocalMasterClient local_;
  DirectMasterChannel channel_;
  std::vector<char> buf_ = std::vector<char>(kObject, 'x');
};

// A write that could not be settled (its bytes may still land) keeps its space reserved: the key
// can be written again at once, but not into that space, until put_start_release_timeout.
TEST_F(StoreCoreTest, UnsettledWriteIsRevokedIntoQuarantine) {
  FailingDataPath unsettled(
      MarkUnsettledWrite(MakeError(ErrorCode::TRANSFER_FAIL, "peer unreachable mid-write")));
  auto core = Core(&unsettled);
  EXPECT_EQ(Put(core.get(), "k"), static_cast<int>(ErrorCode::TRANSFER_FAIL));
  const MasterMetrics m = master_.GetMetrics();
  EXPECT_EQ(m.processing_objects, 0u) << "the key stays held";
  EXPECT_EQ(m.discarded_bytes, kObject) << "the space was handed out again";
  auto again = master_.BatchPutStart({"k"}, {kObject}, ReplicateConfig());
  EXPECT_EQ((*again)[0].error, ErrorCode::NO_AVAILABLE_HANDLE);  // the only space is quarantined
  EXPECT_TRUE(master_.CheckInvariants().ok());
}

// A write that failed for sure (the peer refused it, or confirmed it applied nothing) gives its
// space back at once.
TEST_F(StoreCoreTest, SettledWriteFailureFreesTheSpaceAtOnce) {
  FailingDataPath settled(MakeError(ErrorCode::TRANSFER_FAIL, "peer refused"));
  auto core = Core(&settled);
  EXPECT_EQ(Put(core.get(), "k"), static_cast<int>(ErrorCode::TRANSFER_FAIL));
  EXPECT_EQ(master_.GetMetrics().discarded_bytes, 0u);
  EXPECT_EQ(master_.GetMetrics().allocated_bytes, 0u);
  auto again = master_.BatchPutStart({"k"}, {kObject}, ReplicateConfig());
  EXPECT_EQ((*again)[0].error, ErrorCode::OK);
}

// A client the master forgot fences its inbound writes before remounting: the master hands the
// whole segment out again. It remounts under the instance the fence gave it, so replicas the
// master hands out from now on name the new instance and writes described for the old one are
// refused (found by VOPR seed 806: an RDMA write of a put from before a master restart, retried
// after the remount, landed on an object the new master had placed in the same space).
TEST_F(StoreCoreTest, RemountFencesInboundWritesFirst) {
  FailingDataPath data(absl::OkStatus());
  auto core = Core(&data, {"writer:1", 8 << 20, 1 << 20, 5});
  absl::Status heartbeat = absl::UnknownError("not run");
  core->Heartbeat([&](absl::Status s) { heartbeat = s; });  // unknown client: need_remount
  EXPECT_TRUE(heartbeat.ok()) << heartbeat;
  EXPECT_EQ(data.fenced, 1);
  EXPECT_TRUE(core->mounted());
  EXPECT_EQ(core->segment().instance, 101u) << "remounted under the old instance";
}

// SGLang's prefetch, exist then get: the get reads from the lists the exist brought back and asks
// the master nothing; a later get, one more than 500 ms after the exist, or one after this
// process removed the key asks again.
TEST_F(StoreCoreTest, GetAfterExistReadsTheListedReplicas) {
  FailingDataPath data(absl::OkStatus());  // every transfer succeeds
  auto core = Core(&data);
  ASSERT_EQ(Put(core.get(), "k"), 0);
  auto lists = [&] { return master_.GetMetrics().get_replica_list_calls; };
  auto exists = [&] {
    int rc = -1;
    core->BatchIsExist({"k", "missing"}, [&](std::vector<int> r) {
      EXPECT_EQ(r[1], 0);
      rc = r[0];
    });
    return rc;
  };
  auto get = [&] {
    int64_t rc = 0;
    core->BatchGet({"k"}, {{{buf_.data(), kObject}}}, [&](std::vector<int64_t> r) { rc = r[0]; });
    return rc;
  };
  const uint64_t calls0 = lists();
  EXPECT_EQ(exists(), 1);
  EXPECT_EQ(lists(), calls0 + 1);  // the exist itself
  EXPECT_EQ(master_.GetMetrics().exist_calls, 0u);
  EXPECT_EQ(get(), static_cast<int64_t>(kObject));
  EXPECT_EQ(lists(), calls0 + 1) << "the get asked the master again";
  EXPECT_EQ(get(), static_cast<int64_t>(kObject));
  EXPECT_EQ(lists(), calls0 + 2);  // a list serves one read

  EXPECT_EQ(exists(), 1);
  clock_.Advance(absl::Milliseconds(600));  // past the cache's 500 ms
  EXPECT_EQ(get(), static_cast<int64_t>(kObject));
  EXPECT_EQ(lists(), calls0 + 4);

  EXPECT_EQ(exists(), 1);
  int removed = 1;
  core->BatchRemove({"k"}, /*force=*/true, [&](std::vector<int> r) { removed = r[0]; });
  EXPECT_EQ(removed, 0);
  EXPECT_EQ(get(), static_cast<int64_t>(ErrorCode::OBJECT_NOT_FOUND));
}

TEST_F(StoreCoreTest, ExistWithoutTheCacheAsksOnlyWhetherKeysExist) {
  FailingDataPath data(absl::OkStatus());
  StoreCoreOptions o;
  o.client_id = {1, 2};
  o.master = &channel_;
  o.data = &data;
  o.clock = &clock_;
  o.timer = [](absl::Duration, std::function<void()> fn) { fn(); };
  o.replica_cache_entries = 0;
  StoreCore core(std::move(o));
  ASSERT_EQ(Put(&core, "k"), 0);
  std::vector<int> rc;
  core.BatchIsExist({"k", "", "nope"}, [&](std::vector<int> r) { rc = r; });
  EXPECT_EQ(rc, (std::vector<int>{1, static_cast<int>(ErrorCode::INVALID_KEY), 0}));
  EXPECT_EQ(master_.GetMetrics().exist_calls, 1u);
  EXPECT_EQ(master_.GetMetrics().get_replica_list_calls, 0u);
}

}  // namespace
}  // namespace mooncake
