#include "mooncake/disk/disk_store.h"

#include <stdlib.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/rng.h"
#include "mooncake/disk/disk_io.h"
#include "mooncake/disk/mem_disk_io.h"

namespace mooncake {
namespace {

// The bytes of put `put_id` of `key`: distinct per (key, put id), so a stale or torn read shows.
std::string Value(const std::string& key, uint64_t put_id, uint64_t size) {
  std::string v(size, '\0');
  Rng rng(std::hash<std::string>()(key) * 31 + put_id);
  for (char& c : v) c = static_cast<char>(rng.Next64());
  return v;
}

class DiskStoreTest : public ::testing::Test {
 protected:
  DiskStoreOptions Options() {
    DiskStoreOptions o;
    o.dir = "/ssd/tier";
    return o;
  }
  std::unique_ptr<DiskStore> OpenStore(const DiskStoreOptions& o) {
    auto s = DiskStore::Open(o, &disk_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  // Writes objects (key, put id, size) in one commit.
  DiskStore::CommitResult Put(
      DiskStore* store, const std::vector<std::tuple<std::string, uint64_t, uint64_t>>& objs) {
    std::vector<std::string> values;
    std::vector<DiskStore::Item> items;
    for (const auto& [key, put_id, size] : objs) values.push_back(Value(key, put_id, size));
    for (size_t i = 0; i < objs.size(); ++i) {
      items.push_back(
          {std::get<0>(objs[i]), std::get<1>(objs[i]), values[i].data(), values[i].size()});
    }
    return store->Commit(store->Stage(items));
  }
  // The error code of reading `key`, checking the bytes when it succeeds.
  ErrorCode ReadCheck(DiskStore* store, const std::string& key, uint64_t put_id, uint64_t size) {
    std::string got(size, '\0');
    absl::Status s = store->Read(key, put_id, got.data(), got.size());
    if (s.ok()) {
      EXPECT_EQ(got, Value(key, put_id, size)) << key << " read wrong bytes";
    }
    return ToErrorCode(s);
  }

  MemDiskIo disk_{42};
};

TEST_F(DiskStoreTest, CommittedObjectsReadBackAndSurviveARestart) {
  auto store = OpenStore(Options());
  auto r = Put(store.get(), {{"a", 1, 100}, {"b", 2, 5000}, {"c", 3, 1 << 20}});
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.stored.size(), 3u);
  EXPECT_EQ(ReadCheck(store.get(), "b", 2, 5000), ErrorCode::OK);
  EXPECT_EQ(ReadCheck(store.get(), "b", 7, 5000), ErrorCode::FILE_NOT_FOUND);  // another put
  EXPECT_EQ(ReadCheck(store.get(), "zz", 0, 10), ErrorCode::FILE_NOT_FOUND);
  std::string small(10, '\0');
  EXPECT_EQ(ToErrorCode(store->Read("c", 3, small.data(), small.size())),
            ErrorCode::INVALID_PARAMS);

  store.reset();  // a clean stop; a kill loses nothing more, as commits are already durable
  store = OpenStore(Options());
  EXPECT_EQ(store->List().size(), 3u);
  EXPECT_EQ(store->GetStats().recovered_objects, 3u);
  EXPECT_EQ(ReadCheck(store.get(), "a", 1, 100), ErrorCode::OK);
  EXPECT_EQ(ReadCheck(store.get(), "c", 3, 1 << 20), ErrorCode::OK);
  // New buckets do not reuse the old names.
  ASSERT_TRUE(Put(store.get(), {{"d", 4, 10}}).status.ok());
  EXPECT_EQ(store->GetStats().buckets, 2u);
}

TEST_F(DiskStoreTest, ATornWriteIsDroppedAtRestartAndEarlierObjectsStay) {
  DiskStoreOptions o = Options();
  o.bucket_size_limit = 64 << 10;  // several buckets per commit
  auto store = OpenStore(o);
  ASSERT_TRUE(Put(store.get(), {{"old", 1, 30000}}).status.ok());
  disk_.TearNextWrite();
  auto r = Put(store.get(), {{"t1", 2, 30000}, {"t2", 3, 30000}, {"t3", 4, 30000}});
  EXPECT_FALSE(r.status.ok());
  EXPECT_FALSE(r.failed.empty());  // the torn bucket's objects were never reported stored
  for (const DiskObject& f : r.failed) EXPECT_FALSE(store->Contains(f.key));

  store.reset();
  disk_.Restart();
  store = OpenStore(o);
  EXPECT_EQ(ReadCheck(store.get(), "old", 1, 30000), ErrorCode::OK);
  // Whatever survived the tear verifies; nothing else is served.
  for (const auto& obj : store->List()) {
    EXPECT_EQ(ReadCheck(store.get(), obj.key, obj.put_id, obj.size), ErrorCode::OK);
  }
  EXPECT_GE(store->GetStats().torn_records + store->List().size(), 1u);
}

TEST_F(DiskStoreTest, EveryTruncationOfABucketRecoversOnlyWholeRecords) {
  auto store = OpenStore(Options());
  ASSERT_TRUE(Put(store.get(), {{"x", 1, 5000}, {"y", 2, 9000}, {"z", 3, 100}}).status.ok());
  store.reset();
  const std::string bucket = "/ssd/tier/bucket-0000000000000001.mcb";
  // Records start at 0, 8192 (x spans two pages) and 20480; the file ends at 24576.
  for (uint64_t cut : {24575u, 20480u, 12000u, 8192u, 100u}) {
    disk_.TruncateForTesting(bucket, cut);
    store = OpenStore(Options());
    size_t expect = cut >= 20480 ? 2 : cut >= 8192 ? 1 : 0;
    EXPECT_EQ(store->List().size(), expect) << "cut at " << cut;
    for (const auto& obj : store->List()) {
      EXPECT_EQ(ReadCheck(store.get(), obj.key, obj.put_id, obj.size), ErrorCode::OK);
    }
    store.reset();
  }
}

TEST_F(DiskStoreTest, BitRotIsNeverServed) {
  auto store = OpenStore(Options());
  ASSERT_TRUE(Put(store.get(), {{"a", 1, 5000}, {"b", 2, 5000}}).status.ok());
  const std::string bucket = "/ssd/tier/bucket-0000000000000001.mcb";
  // Flip a value bit of "b" (its record starts at 8192) after it was indexed: the read refuses.
  disk_.FlipBit(bucket, 8192 + 64 + 1 + 100);
  store.reset();
  store = OpenStore(Options());  // the scan stops at the bad record
  EXPECT_TRUE(store->Contains("a"));
  EXPECT_FALSE(store->Contains("b"));

  // Rot that appears while running is caught by the read's check.
  ASSERT_TRUE(Put(store.get(), {{"c", 3, 5000}}).status.ok());
  disk_.FlipBit("/ssd/tier/bucket-0000000000000002.mcb", 64 + 1 + 7);
  bool dropped = false;
  std::string got(5000, '\0');
  EXPECT_EQ(ToErrorCode(store->Read("c", 3, got.data(), got.size(), &dropped)),
            ErrorCode::FILE_READ_FAIL);
  EXPECT_TRUE(dropped);
  EXPECT_FALSE(store->Contains("c"));
  EXPECT_EQ(store->GetStats().checksum_failures, 1u);
  EXPECT_EQ(ReadCheck(store.get(), "a", 1, 5000), ErrorCode::OK);
}

TEST_F(DiskStoreTest, RemovedObjectsStayGoneAfterARestart) {
  auto store = OpenStore(Options());
  ASSERT_TRUE(Put(store.get(), {{"a", 1, 100}, {"b", 2, 100}, {"c", 3, 100}}).status.ok());
  EXPECT_EQ(store->Remove({{"a", 1, 0}, {"b", 99, 0}, {"nope", 0, 0}}), 1u);  // b: other put
  ASSERT_TRUE(Put(store.get(), {{"c", 4, 200}}).status.ok());                 // replaces put 3 of c
  store.reset();
  store = OpenStore(Options());
  EXPECT_FALSE(store->Contains("a"));
  EXPECT_TRUE(store->Contains("b", 2));
  EXPECT_EQ(ReadCheck(store.get(), "c", 4, 200), ErrorCode::OK);
  EXPECT_FALSE(store->Contains("c", 3));
  // A removed key can be stored again.
  ASSERT_TRUE(Put(store.get(), {{"a", 5, 100}}).status.ok());
  store.reset();
  store = OpenStore(Options());
  EXPECT_EQ(ReadCheck(store.get(), "a", 5, 100), ErrorCode::OK);
}

TEST_F(DiskStoreTest, CapacityEvictsOldestBucketsAndRefusesWhatCannotFit) {
  DiskStoreOptions o = Options();
  o.capacity_bytes = 100 * 4096;
  o.high_watermark = 0.9;
  o.evict_slack = 0.1;
  auto store = OpenStore(o);
  std::vector<DiskObject> evicted;
  for (int i = 0; i < 40; ++i) {  // 40 buckets of 3 pages; 90 pages fit under the watermark
    auto r = Put(store.get(), {{"k" + std::to_string(i), 1, 3 * 4096 - 100}});
    ASSERT_TRUE(r.status.ok()) << i << ": " << r.status;
    for (auto& e : r.evicted) evicted.push_back(e);
    EXPECT_LE(store->GetStats().used_bytes, 90u * 4096);
  }
  ASSERT_FALSE(evicted.empty());
  EXPECT_EQ(evicted.front().key, "k0");  // oldest first
  for (const DiskObject& e : evicted) EXPECT_FALSE(store->Contains(e.key));
  EXPECT_TRUE(store->Contains("k39"));
  EXPECT_EQ(store->GetStats().objects + evicted.size(), 40u);

  auto too_big = Put(store.get(), {{"huge", 1, 95 * 4096}});
  EXPECT_EQ(ToErrorCode(too_big.status), ErrorCode::FILE_WRITE_FAIL);
  EXPECT_EQ(too_big.failed.size(), 1u);
  EXPECT_TRUE(store->Contains("k39"));  // refusing it cost nothing else
}

TEST_F(DiskStoreTest, AFullDiskCostsOnlyTheObjectsBeingWritten) {
  auto store = OpenStore(Options());
  ASSERT_TRUE(Put(store.get(), {{"a", 1, 10000}}).status.ok());
  disk_.set_capacity(disk_.used_bytes() + 8192);
  auto r = Put(store.get(), {{"b", 2, 10000}});
  EXPECT_EQ(ToErrorCode(r.status), ErrorCode::FILE_WRITE_FAIL);
  EXPECT_NE(std::string(r.status.message()).find("ENOSPC"), std::string::npos) << r.status;
  EXPECT_EQ(store->GetStats().write_errors, 1u);
  EXPECT_FALSE(store->Contains("b"));
  EXPECT_EQ(ReadCheck(store.get(), "a", 1, 10000), ErrorCode::OK);
  disk_.set_capacity(0);
  EXPECT_TRUE(Put(store.get(), {{"b", 2, 10000}}).status.ok());
}

TEST_F(DiskStoreTest, BadOptionsNameTheField) {
  DiskStoreOptions o = Options();
  o.dir = "";
  EXPECT_NE(std::string(DiskStore::Open(o, &disk_).status().message()).find("ssd_offload_path"),
            std::string::npos);
  o = Options();
  o.high_watermark = 1.5;
  EXPECT_EQ(ToErrorCode(DiskStore::Open(o, &disk_).status()), ErrorCode::INVALID_PARAMS);
}

// Real files: O_DIRECT writes and reads, and a restart from the same directory.
TEST(PosixDiskStoreTest, RoundTripAndRestartOnRealFiles) {
  char tmpl[] = "/tmp/disk_store_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  auto io = NewPosixDiskIo();
  DiskStoreOptions o;
  o.dir = std::string(tmpl) + "/sub/dir";
  std::vector<std::string> values;
  std::vector<DiskStore::Item> items;
  for (int i = 0; i < 50; ++i)
    values.push_back(Value("k" + std::to_string(i), i + 1, 1000 + i * 997));
  for (int i = 0; i < 50; ++i) {
    items.push_back({"k" + std::to_string(i), uint64_t(i + 1), values[i].data(), values[i].size()});
  }
  {
    auto store = DiskStore::Open(o, io.get());
    ASSERT_TRUE(store.ok()) << store.status();
    auto r = (*store)->Commit((*store)->Stage(items));
    ASSERT_TRUE(r.status.ok()) << r.status;
    EXPECT_EQ(r.stored.size(), 50u);
  }
  auto store = DiskStore::Open(o, io.get());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->List().size(), 50u);
  for (int i = 0; i < 50; ++i) {
    std::string got(values[i].size(), '\0');
    ASSERT_TRUE((*store)->Read(items[i].key, items[i].put_id, got.data(), got.size()).ok());
    EXPECT_EQ(got, values[i]);
  }
  EXPECT_EQ(system(("rm -rf " + std::string(tmpl)).c_str()), 0);
}

// Random commits, reads, removals and restarts over a disk that fails writes and reads, rots bits
// and tears writes at crashes: a read either returns the bytes of that put or fails. Never other
// bytes, and an object reported stored stays readable unless the disk lost or refused it.
TEST(DiskStoreFaultTest, SeedsWithDiskFaultsNeverServeWrongBytes) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    MemDiskIo disk(seed);
    disk.set_faults({/*write_error=*/0.05, /*read_error=*/0.02, /*bit_rot=*/0.02});
    Rng rng(seed * 977);
    DiskStoreOptions o;
    o.dir = "/d";
    o.capacity_bytes = 400 * 4096;
    o.bucket_size_limit = 8 * 4096;
    auto opened = DiskStore::Open(o, &disk);
    ASSERT_TRUE(opened.ok());
    std::unique_ptr<DiskStore> store = std::move(*opened);
    std::map<std::string, std::pair<uint64_t, uint64_t>> stored;     // key -> (put id, size)
    std::map<uint64_t, std::pair<std::string, uint64_t>> attempted;  // put id -> (key, size)
    uint64_t next_put = 1, served = 0;
    for (int step = 0; step < 300; ++step) {
      const uint64_t op = rng.Uniform(10);
      if (op < 4) {
        std::vector<std::string> keys, values;
        std::vector<DiskStore::Item> items;
        const int n = 1 + static_cast<int>(rng.Uniform(6));
        for (int i = 0; i < n; ++i) keys.push_back("k" + std::to_string(rng.Uniform(60)));
        std::vector<uint64_t> puts;
        for (int i = 0; i < n; ++i) {
          puts.push_back(next_put++);
          values.push_back(Value(keys[i], puts[i], 1 + rng.Uniform(20000)));
          attempted[puts[i]] = {keys[i], values[i].size()};
        }
        for (int i = 0; i < n; ++i)
          items.push_back({keys[i], puts[i], values[i].data(), values[i].size()});
        if (rng.Bernoulli(0.05)) disk.TearNextWrite();
        auto r = store->Commit(store->Stage(items));
        for (const auto& s : r.stored) stored[s.key] = {s.put_id, s.size};
        for (const auto& e : r.evicted) {
          if (stored.count(e.key) && stored[e.key].first == e.put_id) stored.erase(e.key);
        }
      } else if (op < 8) {
        const std::string key = "k" + std::to_string(rng.Uniform(60));
        auto size = store->SizeOf(key);
        std::string got(size.ok() ? *size : 1, '\0');
        absl::Status s = store->Read(key, 0, got.data(), got.size());
        if (s.ok()) {
          ASSERT_TRUE(stored.count(key)) << key << " served but never reported stored";
          EXPECT_EQ(got, Value(key, stored[key].first, stored[key].second)) << key;
          ++served;
        } else if (stored.count(key) && !store->Contains(key)) {
          stored.erase(key);  // dropped by the failed read
        }
      } else if (op < 9) {
        const std::string key = "k" + std::to_string(rng.Uniform(60));
        store->Remove({{key, 0, 0}});
        stored.erase(key);
      } else {
        store.reset();  // crash or stop, then restart from what is on disk
        disk.Restart();
        auto again = DiskStore::Open(o, &disk);
        ASSERT_TRUE(again.ok()) << again.status();
        store = std::move(*again);
        // After a restart every object held is one a commit wrote (whole records of a torn
        // commit included, and a removal whose tombstone the disk refused may return); reads
        // below then check its bytes.
        stored.clear();
        for (const DiskObject& obj : store->List()) {
          ASSERT_TRUE(attempted.count(obj.put_id)) << obj.key << " was never written";
          EXPECT_EQ(attempted[obj.put_id], std::make_pair(obj.key, obj.size));
          stored[obj.key] = {obj.put_id, obj.size};
        }
      }
    }
    EXPECT_GT(served, 0u);
  }
}

}  // namespace
}  // namespace mooncake
