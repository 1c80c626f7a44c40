#include "mooncake/store/replica_cache.h"

#include <utility>

namespace mooncake {

void ReplicaCache::Put(std::vector<std::pair<std::string, ObjectReplicas>> lists,
                       int64_t lease_start_ns, absl::Duration lease) {
  if (capacity_ == 0 || lists.empty()) return;
  const int64_t lease_ns = absl::ToInt64Nanoseconds(lease);
  absl::MutexLock lock(&mu_);
  for (auto& [key, replicas] : lists) {
    const uint64_t seq = next_seq_++;
    Slot& slot = entries_[key];
    slot.entry = Entry{std::move(replicas), lease_start_ns, lease_ns};
    slot.seq = seq;
    order_.emplace_back(std::move(key), seq);
  }
  // Drop the oldest; a deque record whose slot was overwritten or taken since is stale.
  while (entries_.size() > capacity_ || order_.size() > 2 * capacity_) {
    auto [old_key, old_seq] = std::move(order_.front());
    order_.pop_front();
    auto it = entries_.find(old_key);
    if (it != entries_.end() && it->second.seq == old_seq) entries_.erase(it);
  }
}

void ReplicaCache::Put(const std::string& key, ObjectReplicas replicas, int64_t lease_start_ns,
                       absl::Duration lease) {
  std::vector<std::pair<std::string, ObjectReplicas>> one;
  one.emplace_back(key, std::move(replicas));
  Put(std::move(one), lease_start_ns, lease);
}

std::optional<ReplicaCache::Entry> ReplicaCache::TakeLocked(const std::string& key,
                                                            int64_t now_ns) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  Entry e = std::move(it->second.entry);
  entries_.erase(it);
  const int64_t age = now_ns - e.lease_start_ns;
  if (age > e.lease_ns / 2 || age > max_age_ns_) return std::nullopt;
  return e;
}

std::vector<std::optional<ReplicaCache::Entry>> ReplicaCache::Take(
    const std::vector<std::string>& keys, int64_t now_ns) {
  std::vector<std::optional<Entry>> out(keys.size());
  absl::MutexLock lock(&mu_);
  if (entries_.empty()) return out;
  for (size_t i = 0; i < keys.size(); ++i) out[i] = TakeLocked(keys[i], now_ns);
  return out;
}

std::optional<ReplicaCache::Entry> ReplicaCache::Take(const std::string& key, int64_t now_ns) {
  absl::MutexLock lock(&mu_);
  return TakeLocked(key, now_ns);
}

void ReplicaCache::Erase(const std::vector<std::string>& keys) {
  absl::MutexLock lock(&mu_);
  for (const std::string& key : keys) entries_.erase(key);
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
