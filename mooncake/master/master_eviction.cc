#include <algorithm>
#include <cmath>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/master_service.h"
#include "mooncake/master/master_service_internal.h"

// MasterService: eviction.
namespace mooncake {

using master_internal::Add;
using master_internal::CheckBatchSize;
using master_internal::ValidateClient;
using master_internal::ValidateSegmentDesc;
using master_internal::ValidKey;

// ---------------------------------------------------------------------------------------------
// Eviction

uint64_t MasterService::Evict(int64_t now) {
  const EvictionPolicy& policy = *policy_;
  auto candidate = [](const ObjectRecord* r) {
    return EvictionCandidate{r->complete(), r->hard_pinned(), r->soft_pinned(), r->last_use_ns,
                             r->lease_expiry_ns};
  };
  // With the SSD tier, objects that have a disk copy go first: evicting them loses nothing.
  const bool offload = options_.enable_offload;
  auto rank = [&](const ObjectRecord* r) {
    const uint64_t base = policy.Rank(candidate(r));
    if (!offload || r->disk_segment != 0) return base;
    return base | (uint64_t{1} << 62);  // below the soft-pin bit; times stay under 2^62
  };
  // An object already only on disk has no memory left to free.
  auto evictable = [&](const ObjectRecord* r) {
    return r->num_replicas > 0 && !r->offloading() && policy.Evictable(candidate(r), now);
  };
  // An object with a disk copy loses only its memory replicas and stays readable.
  std::vector<ObjectRecord*> to_disk;
  auto keep_on_disk = [&]() {
    if (to_disk.empty()) return;
    absl::MutexLock seg_lock(&seg_mu_);
    for (ObjectRecord* r : to_disk) {
      FreeRecordReplicas(*r);
      r->SetReplicas({});
    }
    Add(counters_->evicted_to_disk, to_disk.size());
    to_disk.clear();
  };
  std::vector<uint64_t> ranks;
  for (size_t s = 0; s < kNumShards; ++s) {
    absl::MutexLock lock(&shards_[s].mu);
    for (const ObjectRecord* r : shards_[s].objects) {
      if (evictable(r)) ranks.push_back(rank(r));
    }
  }
  counters_->eviction_runs.fetch_add(1, std::memory_order_relaxed);
  eviction_generation_.fetch_add(1);
  if (ranks.empty()) return 0;
  const size_t target = std::max<size_t>(
      1,
      static_cast<size_t>(std::ceil(options_.eviction_ratio * static_cast<double>(ranks.size()))));
  std::nth_element(ranks.begin(), ranks.begin() + (target - 1), ranks.end());
  const uint64_t threshold = ranks[target - 1];
  const size_t below = static_cast<size_t>(
      std::count_if(ranks.begin(), ranks.end(), [&](uint64_t x) { return x < threshold; }));
  size_t at_threshold = target - below;
  ranks = {};

  uint64_t evicted = 0, bytes = 0;
  std::vector<ObjectRecord*> victims;
  std::vector<std::string> ties;
  for (size_t s = 0; s < kNumShards; ++s) {
    Shard& shard = shards_[s];
    absl::MutexLock lock(&shard.mu);
    for (auto it = shard.objects.begin(); it != shard.objects.end();) {
      ObjectRecord* r = *it;
      if (!evictable(r) || rank(r) > threshold) {
        ++it;
        continue;
      }
      if (rank(r) == threshold) {
        ties.emplace_back(r->key());
        ++it;
        continue;
      }
      bytes += r->size;
      if (r->disk_segment != 0) {
        to_disk.push_back(r);
        ++evicted;
        ++it;
        continue;
      }
      shard.objects.erase(it++);
      victims.push_back(r);
    }
    evicted += victims.size();
    keep_on_disk();
    NotifyDropped(victims, ObjectDropReason::kEvicted);
    FreeAndDelete(&victims);
  }
  // Equal ranks are common (many objects used at one instant): take them in key order.
  std::sort(ties.begin(), ties.end());
  for (const std::string& key : ties) {
    if (at_threshold == 0) break;
    Shard& shard = ShardFor(key);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.objects.find(key);
    if (it == shard.objects.end() || !evictable(*it) || rank(*it) != threshold) continue;
    ObjectRecord* r = *it;
    bytes += r->size;
    ++evicted;
    --at_threshold;
    if (r->disk_segment != 0) {
      to_disk.push_back(r);
      keep_on_disk();
      continue;
    }
    shard.objects.erase(it);
    victims.push_back(r);
    NotifyDropped(victims, ObjectDropReason::kEvicted);
    FreeAndDelete(&victims);
  }
  Add(counters_->evicted_objects, evicted);
  Add(counters_->evicted_bytes, bytes);
  MC_LOG(DEBUG) << "evicted " << evicted << " objects (" << bytes << " bytes)";
  return evicted;
}

}  // namespace mooncake
