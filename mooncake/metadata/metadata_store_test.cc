#include "mooncake/metadata/metadata_store.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mooncake::metadata {
namespace {

TEST(MetadataStoreTest, PutGetRemove) {
  MetadataStore store(10, 1 << 20);
  EXPECT_TRUE(absl::IsNotFound(store.Get("a").status()));
  ASSERT_TRUE(store.Put("a", "1").ok());
  auto value = store.Get("a");
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(**value, "1");
  ASSERT_TRUE(store.Put("a", "2").ok());  // ordinary keys are overwritten
  EXPECT_EQ(**store.Get("a"), "2");
  EXPECT_EQ(**value, "1");  // a reader's copy is not changed by the overwrite
  EXPECT_TRUE(store.Remove("a").ok());
  EXPECT_TRUE(absl::IsNotFound(store.Remove("a")));
  EXPECT_EQ(store.size(), 0u);
}

TEST(MetadataStoreTest, RpcMetaKeyCannotBeClaimedTwice) {
  MetadataStore store(10, 1 << 20);
  const std::string key = "mooncake/rpc_meta/node0";
  ASSERT_TRUE(store.Put(key, R"({"rpc_port":1})").ok());
  EXPECT_TRUE(store.Put(key, R"({"rpc_port":1})").ok());  // the same owner again
  absl::Status s = store.Put(key, R"({"rpc_port":2})");
  EXPECT_TRUE(absl::IsAlreadyExists(s)) << s;
  EXPECT_NE(s.message().find(key), absl::string_view::npos) << s;
  EXPECT_EQ(**store.Get(key), R"({"rpc_port":1})");  // unchanged
  ASSERT_TRUE(store.Remove(key).ok());
  EXPECT_TRUE(store.Put(key, R"({"rpc_port":2})").ok());  // free again after removal
}

TEST(MetadataStoreTest, MaxKeysBoundsNewKeysOnly) {
  MetadataStore store(2, 1 << 20);
  ASSERT_TRUE(store.Put("a", "1").ok());
  ASSERT_TRUE(store.Put("b", "1").ok());
  absl::Status s = store.Put("c", "1");
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_TRUE(store.Put("a", "2").ok());  // overwriting is still allowed
  ASSERT_TRUE(store.Remove("b").ok());
  EXPECT_TRUE(store.Put("c", "1").ok());
  EXPECT_EQ(store.size(), 2u);
}

// Regression (defect 8): keys and body size were capped, but not their product: 1M keys of 16 MiB
// bodies was a 16 TiB store. The bytes of keys and values together are bounded, overwrites
// included, and a refused Put changes nothing.
TEST(MetadataStoreTest, TotalBytesAreBounded) {
  MetadataStore store(1 << 20, 100);
  ASSERT_TRUE(store.Put("a", std::string(40, 'x')).ok());  // 41 bytes
  ASSERT_TRUE(store.Put("b", std::string(40, 'x')).ok());  // 82
  absl::Status s = store.Put("c", std::string(40, 'x'));   // 123 > 100
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_NE(s.message().find("max_total_bytes"), std::string::npos) << s;
  EXPECT_FALSE(store.Get("c").ok());
  EXPECT_FALSE(store.Put("a", std::string(60, 'y')).ok());  // growing an existing key counts
  EXPECT_EQ(**store.Get("a"), std::string(40, 'x'));
  EXPECT_TRUE(store.Put("a", std::string(10, 'z')).ok());  // shrinking is fine: 52
  EXPECT_EQ(store.total_bytes(), 52u);
  ASSERT_TRUE(store.Remove("b").ok());
  EXPECT_EQ(store.total_bytes(), 11u);
  EXPECT_TRUE(store.Put("c", std::string(40, 'x')).ok());
}

TEST(MetadataStoreTest, ConcurrentWritersAndReaders) {
  MetadataStore store(1 << 20, 1 << 30);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&store, t] {
      for (int i = 0; i < 2000; ++i) {
        std::string key = absl::StrCat("k", t, "_", i % 50);
        std::string value = absl::StrCat(t, ":", i);
        ASSERT_TRUE(store.Put(key, value).ok());
        auto got = store.Get(key);
        ASSERT_TRUE(got.ok());
        EXPECT_EQ(**got, value);  // each key has one writer
        if (i % 7 == 0) {
          ASSERT_TRUE(store.Remove(key).ok());
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(store.size(), 8u * 50);
}

}  // namespace
}  // namespace mooncake::metadata
