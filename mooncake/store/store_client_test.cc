// StoreClient end to end in one process: a MasterService behind LocalMasterClient, and real
// transfer engines over loopback.
#include "mooncake/store/store_client.h"

#include <string.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/master/local_master_client.h"
#include "mooncake/master/master_service.h"
#include "mooncake/transfer/tcp/tcp_frame.h"

namespace mooncake {
namespace {

constexpr int kObjectNotFound = static_cast<int>(ErrorCode::OBJECT_NOT_FOUND);

class StoreClientTest : public ::testing::Test {
 protected:
  StoreClientTest() : master_(MasterServiceOptions(), RealClock::Get()) {}

  std::unique_ptr<StoreClient> NewClient(uint64_t segment_size, bool allow_shm = true,
                                         absl::Duration transfer_timeout = absl::Seconds(30)) {
    StoreOptions o;
    o.engine_options.transfer_timeout = transfer_timeout;
    o.config.master_server_address = "127.0.0.1:50051";  // unused: the master is in-process
    o.config.local_hostname = "127.0.0.1";
    o.config.global_segment_size = segment_size;
    o.master = std::make_unique<LocalMasterClient>(&master_);
    o.engine_options.allow_shm = allow_shm;
    auto c = StoreClient::Create(std::move(o));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  MasterService master_;
};

TEST_F(StoreClientTest, PutInOneClientGetInAnother) {
  for (bool shm : {true, false}) {
    auto a = NewClient(64 << 20, shm);
    auto b = NewClient(0, shm);  // pure client: data lands in a's segment
    std::vector<char> src(1 << 20), dst(1 << 20, 0);
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<char>(i * 31 + shm);
    ASSERT_TRUE(b->RegisterBuffer(src.data(), src.size()).ok());
    ASSERT_TRUE(a->RegisterBuffer(dst.data(), dst.size()).ok());
    std::vector<std::string> keys;
    std::vector<std::vector<BufferRef>> put_bufs, get_bufs;
    for (int i = 0; i < 16; ++i) {
      keys.push_back("page_" + std::to_string(i) + (shm ? "_shm" : "_tcp"));
      put_bufs.push_back({{src.data() + i * 65536, 65536}});
      get_bufs.push_back({{dst.data() + i * 65536, 65536}});
    }
    for (int rc : b->BatchPut(keys, put_bufs, ReplicateConfig())) EXPECT_EQ(rc, 0);
    for (int rc : b->BatchIsExist(keys)) EXPECT_EQ(rc, 1);
    for (int64_t rc : a->BatchGet(keys, get_bufs)) EXPECT_EQ(rc, 65536);
    EXPECT_EQ(src, dst);
    // Putting existing keys is success and does not rewrite them.
    for (int rc : b->BatchPut(keys, put_bufs, ReplicateConfig())) EXPECT_EQ(rc, 0);
  }
}

TEST_F(StoreClientTest, ExistsMissingAndBadKeys) {
  auto c = NewClient(16 << 20);
  std::vector<char> buf(4096, 'x');
  ASSERT_TRUE(c->RegisterBuffer(buf.data(), buf.size()).ok());
  ASSERT_EQ(c->BatchPut({"k1"}, {{{buf.data(), buf.size()}}}, ReplicateConfig())[0], 0);
  std::vector<int> e = c->BatchIsExist({"k1", "nope", ""});
  EXPECT_EQ(e[0], 1);
  EXPECT_EQ(e[1], 0);
  EXPECT_EQ(e[2], static_cast<int>(ErrorCode::INVALID_KEY));
  EXPECT_EQ(c->GetSize("k1"), 4096);
  EXPECT_EQ(c->GetSize("nope"), kObjectNotFound);
  EXPECT_EQ(c->BatchGet({"nope"}, {{{buf.data(), buf.size()}}})[0], kObjectNotFound);
}

TEST_F(StoreClientTest, BadBuffersFailCleanlyAndLeaveNothingBehind) {
  auto c = NewClient(16 << 20);
  std::vector<char> reg(8192, 'r'), unreg(8192, 'u');
  ASSERT_TRUE(c->RegisterBuffer(reg.data(), reg.size()).ok());
  // Unregistered source: the put fails and is revoked, so the key is absent and reusable.
  int rc = c->BatchPut({"k"}, {{{unreg.data(), 4096}}}, ReplicateConfig())[0];
  EXPECT_EQ(rc, static_cast<int>(ErrorCode::INVALID_PARAMS));
  EXPECT_EQ(c->BatchIsExist({"k"})[0], 0);
  EXPECT_EQ(c->BatchPut({"k"}, {{{reg.data(), 4096}}}, ReplicateConfig())[0], 0);
  // A destination smaller than the object is refused before any byte moves.
  std::vector<int64_t> got = c->BatchGet({"k"}, {{{reg.data() + 4096, 100}}});
  EXPECT_EQ(got[0], static_cast<int>(ErrorCode::INVALID_PARAMS));
  EXPECT_EQ(reg[4096], 'r');
  // Unregistered destination.
  EXPECT_EQ(c->BatchGet({"k"}, {{{unreg.data(), 4096}}})[0],
            static_cast<int>(ErrorCode::INVALID_PARAMS));
  // Mismatched lengths, empty and zero-size values.
  EXPECT_EQ(c->BatchPut({"a", "b"}, {{{reg.data(), 1}}}, ReplicateConfig())[1],
            static_cast<int>(ErrorCode::INVALID_PARAMS));
  EXPECT_EQ(c->BatchPut({""}, {{{reg.data(), 1}}}, ReplicateConfig())[0],
            static_cast<int>(ErrorCode::INVALID_KEY));
  EXPECT_EQ(c->BatchPut({"z"}, {{{reg.data(), 0}}}, ReplicateConfig())[0],
            static_cast<int>(ErrorCode::INVALID_PARAMS));
}

TEST_F(StoreClientTest, MultiBufferObjectsScatterAndGather) {
  auto c = NewClient(16 << 20);
  std::vector<char> buf(1 << 16);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i % 251);
  ASSERT_TRUE(c->RegisterBuffer(buf.data(), buf.size()).ok());
  ASSERT_EQ(c->BatchPut({"multi"}, {{{buf.data(), 1000}, {buf.data() + 5000, 3000}}},
                        ReplicateConfig())[0],
            0);
  EXPECT_EQ(c->GetSize("multi"), 4000);
  char* out = buf.data() + 32768;
  std::vector<int64_t> got = c->BatchGet({"multi"}, {{{out, 2500}, {out + 10000, 1500}}});
  ASSERT_EQ(got[0], 4000);
  EXPECT_EQ(memcmp(out, buf.data(), 1000), 0);
  EXPECT_EQ(memcmp(out + 1000, buf.data() + 5000, 1500), 0);
  EXPECT_EQ(memcmp(out + 10000, buf.data() + 6500, 1500), 0);
}

TEST_F(StoreClientTest, BytesApiRemoveAndReplicas) {
  auto a = NewClient(8 << 20);
  auto b = NewClient(8 << 20);
  ReplicateConfig two;
  two.replica_num = 2;
  EXPECT_EQ(a->PutBytes("hello", "world", two), 0);
  auto v = b->GetBytes("hello");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "world");
  EXPECT_EQ(b->GetBytes("missing").status().code(), absl::StatusCode::kNotFound);
  // The lease from the get protects it unless forced.
  EXPECT_EQ(a->Remove("hello", false), static_cast<int>(ErrorCode::OBJECT_HAS_LEASE));
  EXPECT_EQ(a->Remove("hello", true), 0);
  EXPECT_EQ(a->BatchIsExist({"hello"})[0], 0);
  EXPECT_EQ(a->PutBytes("x1", "1", ReplicateConfig()), 0);
  EXPECT_EQ(a->PutBytes("x2", "2", ReplicateConfig()), 0);
  EXPECT_EQ(a->RemoveAll(true), 2);
}

TEST_F(StoreClientTest, ConcurrentCallersFromSeveralThreads) {
  auto c = NewClient(64 << 20);
  std::vector<char> buf(8 << 20);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(c->RegisterBuffer(buf.data(), buf.size()).ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 10; ++round) {
        std::vector<std::string> keys;
        std::vector<std::vector<BufferRef>> src, dst;
        for (int i = 0; i < 8; ++i) {
          keys.push_back(absl::StrCat("t", t, "_r", round, "_", i));
          src.push_back({{buf.data() + (t * 8 + i) * 32768, 32768}});
          dst.push_back({{buf.data() + (4 << 20) + (t * 8 + i) * 32768, 32768}});
        }
        for (int rc : c->BatchPut(keys, src, ReplicateConfig())) EXPECT_EQ(rc, 0);
        for (int64_t rc : c->BatchGet(keys, dst)) EXPECT_EQ(rc, 32768);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(memcmp(buf.data(), buf.data() + (4 << 20), 3 * 8 * 32768), 0);
}

TEST_F(StoreClientTest, AsyncFormsDeliverResultsThroughCallbacks) {
  auto c = NewClient(8 << 20);
  std::vector<char> buf(8192, 'q');
  ASSERT_TRUE(c->RegisterBuffer(buf.data(), buf.size()).ok());
  absl::Notification put_done, get_done;
  std::vector<int> put_rc;
  std::vector<int64_t> get_rc;
  c->BatchPutAsync({"async"}, {{{buf.data(), 4096}}}, ReplicateConfig(), [&](std::vector<int> r) {
    put_rc = r;
    put_done.Notify();
  });
  ASSERT_TRUE(put_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  c->BatchGetAsync({"async"}, {{{buf.data() + 4096, 4096}}}, [&](std::vector<int64_t> r) {
    get_rc = r;
    get_done.Notify();
  });
  ASSERT_TRUE(get_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(put_rc, std::vector<int>{0});
  EXPECT_EQ(get_rc, std::vector<int64_t>{4096});
}

TEST_F(StoreClientTest, ClosedClientRefusesWorkAndUnmounts) {
  auto c = NewClient(8 << 20);
  EXPECT_EQ(master_.ListSegments().size(), 1u);
  ASSERT_TRUE(c->Close().ok());
  EXPECT_EQ(master_.ListSegments().size(), 0u);
  EXPECT_LT(c->BatchIsExist({"x"})[0], 0);
}

// Holds back WRITE frames at a TCP data server until released (a peer slow to drain a write).
class WriteStall {
 public:
  // Stalls the first `count` WRITE frames.
  explicit WriteStall(int count) : left_(count) {}
  std::function<void(const FrameHeader&)> Hook() {
    return [this](const FrameHeader&) {
      absl::MutexLock lock(&mu_);
      if (left_ == 0) return;
      --left_;
      ++stalled_;
      mu_.Await(absl::Condition(&released_));
    };
  }
  void WaitStalled(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stalled_ >= n; };
    mu_.Await(absl::Condition(&reached));
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

 private:
  absl::Mutex mu_;
  int left_ ABSL_GUARDED_BY(mu_);
  int stalled_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// Regression (defect 3): a TCP write the owner was slow to drain timed out at the writer, which
// reported it failed at once; the put was revoked, its space went to another object, and the late
// bytes then overwrote that object. A timed-out write is now reported only once the owner has
// fenced the connection, so nothing of it lands afterwards.
TEST_F(StoreClientTest, ATimedOutTcpWriteNeverLandsInReusedSpace) {
  constexpr uint64_t kObject = 256 << 10;
  auto owner = NewClient(kObject, /*allow_shm=*/false);  // room for exactly one object
  auto slow = NewClient(0, false, /*transfer_timeout=*/absl::Milliseconds(300));
  auto other = NewClient(0, false);
  WriteStall stall(1);
  owner->engine()->SetTcpFaultHookForTesting(stall.Hook());
  std::vector<char> late(kObject, 'L'), good(kObject, 'G'), back(kObject, 0);
  ASSERT_TRUE(slow->RegisterBuffer(late.data(), late.size()).ok());
  ASSERT_TRUE(other->RegisterBuffer(good.data(), good.size()).ok());
  ASSERT_TRUE(other->RegisterBuffer(back.data(), back.size()).ok());
  std::thread writer([&] {
    int rc = slow->BatchPut({"late"}, {{{late.data(), kObject}}}, ReplicateConfig())[0];
    EXPECT_EQ(rc, static_cast<int>(ErrorCode::TRANSFER_FAIL));
  });
  stall.WaitStalled(1);
  writer.join();  // timed out, settled, revoked
  // The space is handed to another object, whose write goes through.
  ASSERT_EQ(other->BatchPut({"good"}, {{{good.data(), kObject}}}, ReplicateConfig())[0], 0);
  stall.Release();  // the owner finally gets to the late write
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_EQ(other->BatchGet({"good"}, {{{back.data(), kObject}}})[0],
            static_cast<int64_t>(kObject));
  EXPECT_EQ(back, good) << "the timed-out write landed on the object that reused its space";
}

// Regression (defect 6): Close released the engine while calls on other threads were still using
// it, and left engine_ dangling for later calls (PutBytes did not even check the store was open).
TEST_F(StoreClientTest, CloseWaitsForCallsInFlightAndLaterCallsFailCleanly) {
  auto owner = NewClient(16 << 20, /*allow_shm=*/false);
  auto client = NewClient(0, false);
  const std::string name = client->hostname();
  WriteStall stall(1);
  owner->engine()->SetTcpFaultHookForTesting(stall.Hook());
  std::vector<char> buf(64 << 10, 'x');
  ASSERT_TRUE(client->RegisterBuffer(buf.data(), buf.size()).ok());
  std::atomic<bool> put_done{false}, closed{false};
  std::thread put([&] {
    EXPECT_EQ(client->BatchPut({"k"}, {{{buf.data(), buf.size()}}}, ReplicateConfig())[0], 0);
    put_done = true;
  });
  stall.WaitStalled(1);
  std::thread closer([&] {
    EXPECT_TRUE(client->Close().ok());
    closed = true;
  });
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(closed.load()) << "Close returned while a put was still in flight";
  stall.Release();
  put.join();
  closer.join();
  EXPECT_TRUE(put_done.load());
  const int closed_code = static_cast<int>(ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(client->PutBytes("after", "v", ReplicateConfig()), closed_code);
  EXPECT_EQ(ToErrorCode(client->GetBytes("k").status()), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(client->BatchIsExist({"k"})[0], closed_code);
  EXPECT_EQ(ToErrorCode(client->RegisterBuffer(buf.data(), buf.size())), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(client->hostname(), name);
  EXPECT_EQ(client->engine(), nullptr);
  EXPECT_EQ(owner->BatchIsExist({"k"})[0], 1);  // the put finished before the client went away
}

}  // namespace
}  // namespace mooncake
