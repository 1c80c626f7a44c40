#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/master_service.h"
#include "mooncake/master/master_service_internal.h"

// MasterService: the SSD tier's side in the master (docs/ssd_tier.md). A storage process whose
// tier synced is an offload client: objects completed with replica 0 on its segments are queued
// for it; OffloadSync hands them out held (kOffloading: the memory keeps those bytes while it
// copies), and records the copies it reports. A disk copy is named by a segment of its holder, so
// it goes with that process's segments (UnmountSegments), and it is deleted (disk_drops) when the
// object is.
namespace mooncake {

using master_internal::Add;
using master_internal::CheckBatchSize;
using master_internal::ValidateClient;
using master_internal::ValidKey;

namespace {
// Per client: queued objects and deletions waiting for its next sync.
constexpr size_t kMaxOffloadQueue = 1 << 20;
}  // namespace

bool MasterService::DiskLive(const ObjectRecord& record) const {
  return record.disk_segment != 0 && SegmentLive(record.disk_segment);
}

void MasterService::QueueDiskDrop(const ObjectRecord& record) {
  if (record.disk_segment == 0) return;
  auto seg = segments_.find(record.disk_segment);
  if (seg == segments_.end()) return;
  auto client = clients_.find(seg->second->owner);
  if (client == clients_.end()) return;
  std::deque<DiskObjectRef>& drops = client->second->disk_drops;
  if (drops.size() >= kMaxOffloadQueue) drops.pop_front();  // it may then return after a restart
  drops.push_back(DiskObjectRef{std::string(record.key()), record.put_id, record.size});
}

void MasterService::QueueOffload(std::vector<std::tuple<std::string, uint64_t, uint32_t>> done) {
  absl::MutexLock lock(&seg_mu_);
  uint64_t overflow = 0;
  for (auto& [key, put_id, segment_id] : done) {
    auto seg = segments_.find(segment_id);
    if (seg == segments_.end()) continue;
    auto client = clients_.find(seg->second->owner);
    if (client == clients_.end() || !client->second->offload) continue;
    auto& queue = client->second->offload_queue;
    if (queue.size() >= kMaxOffloadQueue) {
      queue.pop_front();
      ++overflow;
    }
    queue.emplace_back(std::move(key), put_id);
  }
  Add(counters_->offload_queue_overflow, overflow);
}

absl::StatusOr<OffloadSyncResult> MasterService::OffloadSync(const ClientId& client,
                                                             const OffloadSyncRequest& req) {
  if (!options_.enable_offload) {
    return MakeError(ErrorCode::NOT_SUPPORTED,
                     "this master runs without --enable_offload: no SSD tier");
  }
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  for (size_t n : {req.stored.size(), req.recovered.size(), req.lost.size(),
                   static_cast<size_t>(req.max_tasks)}) {
    if (absl::Status s = CheckBatchSize(n); !s.ok()) return s;
  }
  const int64_t now = NowNanos();
  OffloadSyncResult result;
  uint32_t home = 0;
  std::vector<std::pair<std::string, uint64_t>> queued;
  {
    absl::MutexLock lock(&seg_mu_);
    auto it = clients_.find(client);
    if (it == clients_.end()) {
      return MakeError(ErrorCode::CLIENT_NOT_FOUND,
                       absl::StrCat("client ", client.ToString(), " is not known: remount first"));
    }
    Client& c = *it->second;
    if (c.segment_ids.empty()) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       "an SSD tier needs its process to have a segment mounted");
    }
    home = c.segment_ids.front();
    c.offload = true;
    c.last_heartbeat_ns = std::max(c.last_heartbeat_ns, now);
    const size_t take = std::min<size_t>(req.max_tasks, c.offload_queue.size());
    queued.assign(std::make_move_iterator(c.offload_queue.begin()),
                  std::make_move_iterator(c.offload_queue.begin() + take));
    c.offload_queue.erase(c.offload_queue.begin(), c.offload_queue.begin() + take);
    const size_t drops = std::min<size_t>(kMaxBatchKeys, c.disk_drops.size());
    result.drop.assign(std::make_move_iterator(c.disk_drops.begin()),
                       std::make_move_iterator(c.disk_drops.begin() + drops));
    c.disk_drops.erase(c.disk_drops.begin(), c.disk_drops.begin() + drops);
  }

  uint64_t refused = 0, stored = 0, recovered = 0, lost = 0;
  auto refuse = [&](const DiskObjectRef& o) {
    result.drop.push_back(o);
    ++refused;
  };
  // Copies written on the master's request: kept only for the very put they copied.
  for (const DiskObjectRef& o : req.stored) {
    if (!ValidKey(o.key)) continue;
    Shard& shard = ShardFor(o.key);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.objects.find(o.key);
    if (it == shard.objects.end() || !(*it)->complete() || (*it)->put_id != o.put_id ||
        (*it)->size != o.size) {
      refuse(o);
      continue;
    }
    (*it)->disk_segment = home;
    (*it)->flags &= ~ObjectRecord::kOffloading;
    ++stored;
  }
  // Copies found at startup: an object again, unless the key now names something else.
  for (const DiskObjectRef& o : req.recovered) {
    if (!ValidKey(o.key) || o.size == 0 || o.size > kMaxObjectSize) continue;
    Shard& shard = ShardFor(o.key);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.objects.find(o.key);
    if (it == shard.objects.end()) {
      ObjectRecord* r = ObjectRecord::New(o.key, o.size, ObjectRecord::kComplete, now, {});
      r->put_id = o.put_id;
      r->disk_segment = home;
      shard.objects.insert(r);
      ++recovered;
    } else if ((*it)->complete() && (*it)->put_id == o.put_id && (*it)->size == o.size) {
      // This process holds the copy now (an older holder under another name is gone, or its
      // copy is the same bytes).
      (*it)->disk_segment = home;
      ++recovered;
    } else {
      refuse(o);
    }
  }
  // Copies the tier no longer has: an object left with no copy at all is gone.
  std::vector<ObjectRecord*> gone;
  for (const DiskObjectRef& o : req.lost) {
    if (!ValidKey(o.key)) continue;
    Shard& shard = ShardFor(o.key);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.objects.find(o.key);
    if (it == shard.objects.end() || (*it)->put_id != o.put_id) continue;
    ObjectRecord* r = *it;
    r->flags &= ~ObjectRecord::kOffloading;  // a task that could not be stored
    if (r->disk_segment != home) continue;
    r->disk_segment = 0;
    ++lost;
    if (r->num_replicas == 0) {
      shard.objects.erase(it);
      if (options_.on_object_dropped)
        options_.on_object_dropped(r->key(), ObjectDropReason::kEvicted);
      ObjectRecord::Delete(r);  // no memory to free
    }
  }
  // Hand out queued objects still complete, of that put, not on disk, in this client's memory;
  // each is held until reported.
  for (auto& [key, put_id] : queued) {
    Shard& shard = ShardFor(key);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.objects.find(key);
    if (it == shard.objects.end()) continue;
    ObjectRecord* r = *it;
    if (!r->complete() || r->put_id != put_id || r->disk_segment != 0) continue;
    absl::ReaderMutexLock seg_lock(&seg_mu_);
    for (int j = 0; j < r->num_replicas; ++j) {
      auto seg = segments_.find(r->segment(j));
      if (seg == segments_.end() || seg->second->unmounting || seg->second->owner != client) {
        continue;
      }
      r->flags |= ObjectRecord::kOffloading;
      result.tasks.push_back(OffloadTask{std::move(key), put_id, r->size, r->address(j)});
      break;
    }
  }
  Add(counters_->offload_tasks, result.tasks.size());
  Add(counters_->offload_stored, stored);
  Add(counters_->offload_recovered, recovered);
  Add(counters_->offload_lost, lost);
  Add(counters_->offload_refused, refused);
  return result;
}

}  // namespace mooncake
