// ReplicaCache: the replica lists an exist call brought back, kept for the get that usually
// follows (SGLang's prefetch: batch_is_exist, then batch_get_into of the keys found), so that get
// needs no second master round trip (docs/architecture.md, "Round trips per batch").
//
// Safety: the exist call leased each object it found, from no later than `lease_start` (the
// moment the request left) for `lease`. An entry is handed out only within max_age of that
// (at most half the lease), and the reader still refuses bytes that arrive after the lease
// (LEASE_EXPIRED), so the object cannot be evicted, or removed without force, while it is read.
// Take removes the entry: a list serves one read, later reads ask the master again (and renew
// the lease). This process's removes forget the lists of what they removed. A remove *forced*
// by another process frees the space at once (as Mooncake's does; vLLM's clear relies on it), so
// a read from a list taken before it may see bytes written there later: the same hazard as any
// read in flight across a forced remove, here for at most max_age (500 ms).
//
//   ReplicaCache cache(4096);
//   cache.Put(key, replicas, t0, absl::Seconds(5));
//   std::optional<ReplicaCache::Entry> e = cache.Take(key, now_ns);
//
// Thread-safe. Bounded: beyond `capacity` entries the oldest are dropped.
#ifndef MOONCAKE_STORE_REPLICA_CACHE_H_
#define MOONCAKE_STORE_REPLICA_CACHE_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/master/master_types.h"

namespace mooncake {

class ReplicaCache {
 public:
  struct Entry {
    ObjectReplicas replicas;
    int64_t lease_start_ns = 0;  // no later than the master granted the lease
    int64_t lease_ns = 0;
  };

  explicit ReplicaCache(size_t capacity, absl::Duration max_age = absl::Milliseconds(500))
      : capacity_(capacity), max_age_ns_(absl::ToInt64Nanoseconds(max_age)) {}

  // One lock per batch: an exist or get of 256 keys takes the mutex once.
  void Put(std::vector<std::pair<std::string, ObjectReplicas>> lists, int64_t lease_start_ns,
           absl::Duration lease);
  void Put(const std::string& key, ObjectReplicas replicas, int64_t lease_start_ns,
           absl::Duration lease);
  // Take returns, per key, its entry if it is at most max_age old and at least half its lease
  // remains at `now_ns`, and forgets every entry it looked at.
  std::vector<std::optional<Entry>> Take(const std::vector<std::string>& keys, int64_t now_ns);
  std::optional<Entry> Take(const std::string& key, int64_t now_ns);
  // Erase / Clear forget lists (this process removed the objects: its reads must not find them).
  void Erase(const std::vector<std::string>& keys);
  void Clear();
  size_t size() const;

 private:
  struct Slot {
    Entry entry;
    uint64_t seq = 0;  // matches the deque position that owns this slot
  };
  const size_t capacity_;
  const int64_t max_age_ns_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Slot> entries_ ABSL_GUARDED_BY(mu_);
  std::optional<Entry> TakeLocked(const std::string& key, int64_t now_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::deque<std::pair<std::string, uint64_t>> order_ ABSL_GUARDED_BY(mu_);  // oldest first
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_REPLICA_CACHE_H_
