#include "mooncake/store/replica_cache.h"

#include <utility>

namespace mooncake {

void ReplicaCache::Put(const std::string& key, ObjectReplicas replicas, int64_t lease_start_ns,
                       absl::Duration lease) {
  if (capacity_ == 0) return;
  absl::MutexLock lock(&mu_);
  const uint64_t seq = next_seq_++;
  Slot& slot = entries_[key];
  slot.entry = Entry{std::move(replicas), lease_start_ns, absl::ToInt64Nanoseconds(lease)};
  slot.seq = seq;
  order_.emplace_back(key, seq);
  // Drop the oldest; a deque record whose slot was overwritten or taken since is stale.
  while (entries_.size() > capacity_ || order_.size() > 2 * capacity_) {
    auto [old_key, old_seq] = std::move(order_.front());
    order_.pop_front();
    auto it = entries_.find(old_key);
    if (it != entries_.end() && it->second.seq == old_seq) entries_.erase(it);
  }
}

std::optional<ReplicaCache::Entry> ReplicaCache::Take(const std::string& key, int64_t now_ns) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  Entry e = std::move(it->second.entry);
  entries_.erase(it);
  const int64_t age = now_ns - e.lease_start_ns;
  if (age > e.lease_ns / 2 || age > max_age_ns_) return std::nullopt;
  return e;
}

void ReplicaCache::Erase(const std::string& key) {
  absl::MutexLock lock(&mu_);
  entries_.erase(key);
}

void ReplicaCache::Clear() {
  absl::MutexLock lock(&mu_);
  entries_.clear();
  order_.clear();
}

size_t ReplicaCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace mooncake
