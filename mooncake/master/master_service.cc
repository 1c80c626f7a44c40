#include "mooncake/master/master_service.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/master_service_internal.h"
#include "re2/re2.h"

// MasterService: options, objects and the per-key calls, introspection.
namespace mooncake {

using master_internal::Add;
using master_internal::CheckBatchSize;
using master_internal::ValidateClient;
using master_internal::ValidateSegmentDesc;
using master_internal::ValidKey;

absl::Status ValidateMasterServiceOptions(const MasterServiceOptions& o) {
  if (o.default_kv_lease_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_kv_lease_ttl must be > 0");
  }
  if (!(o.eviction_high_watermark_ratio > 0 && o.eviction_high_watermark_ratio <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eviction_high_watermark_ratio ", o.eviction_high_watermark_ratio, " must be in (0, 1]"));
  }
  if (!(o.eviction_ratio > 0 && o.eviction_ratio <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eviction_ratio ", o.eviction_ratio, " must be in (0, 1]"));
  }
  if (o.client_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("client_ttl must be > 0");
  }
  if (o.put_start_discard_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("put_start_discard_timeout must be > 0");
  }
  if (o.put_start_release_timeout < o.put_start_discard_timeout) {
    return absl::InvalidArgumentError(
        "put_start_release_timeout must be >= put_start_discard_timeout");
  }
  return absl::OkStatus();
}

MasterService::MasterService(const MasterServiceOptions& options, Clock* clock)
    : options_(options),
      clock_(clock),
      policy_(options.eviction_policy != nullptr ? options.eviction_policy
                                                 : std::make_shared<LruEvictionPolicy>()),
      shards_(new Shard[kNumShards]),
      rng_(options.seed),
      counters_(new Counters) {
  static_assert(sizeof(void*) != 8 || sizeof(ObjectRecord) <= 64,
                "ObjectRecord grew; it dominates the master's memory per object");
  MC_CHECK(clock_ != nullptr);
  // Never 0 (0 means "no put id"); distinct across restarts of the master.
  next_put_id_ = (Rng(options_.seed ^ static_cast<uint64_t>(clock_->NowNanos())).Next64() >> 1) | 1;
  // A stall before the first Tick counts too.
  last_tick_ns_ = clock_->NowNanos();
  const absl::Status valid = ValidateMasterServiceOptions(options_);
  MC_CHECK(valid.ok()) << valid;
}

MasterService::~MasterService() = default;

MasterService::Shard& MasterService::ShardFor(absl::string_view key) const {
  // The top bits pick the shard; the set uses the low bits, so shards stay evenly loaded inside.
  const uint64_t h = absl::Hash<absl::string_view>()(key);
  return shards_[(h >> 40) % kNumShards];
}

// ---------------------------------------------------------------------------------------------
// Object removal helpers

void MasterService::NotifyDropped(const std::vector<ObjectRecord*>& records,
                                  ObjectDropReason reason) const {
  if (!options_.on_object_dropped) return;
  for (const ObjectRecord* r : records) {
    if (r->complete()) options_.on_object_dropped(r->key(), reason);
  }
}

void MasterService::FreeAndDelete(std::vector<ObjectRecord*>* records) {
  if (records->empty()) return;
  {
    absl::MutexLock lock(&seg_mu_);
    for (ObjectRecord* r : *records) {
      FreeRecordReplicas(*r);
      QueueDiskDrop(*r);
      if (options_.journal != nullptr) options_.journal->ObjectDropped(r->key(), r->put_id, 0);
    }
  }
  for (ObjectRecord* r : *records) ObjectRecord::Delete(r);
  records->clear();
}

void MasterService::DiscardRecord(ObjectRecord* record, int64_t now) {
  const int64_t release_ns =
      record->last_use_ns + absl::ToInt64Nanoseconds(options_.put_start_release_timeout);
  absl::MutexLock lock(&seg_mu_);
  if (options_.journal != nullptr) {
    options_.journal->ObjectDropped(record->key(), record->put_id,
                                    std::max<int64_t>(0, release_ns - now));
  }
  const uint64_t aligned = SegmentAllocator::AlignedSize(record->size);
  for (int i = 0; i < record->num_replicas; ++i) {
    if (segments_.find(record->segment(i)) == segments_.end()) continue;
    if (release_ns <= now) {
      FreeReplica(record->segment(i), record->address(i), record->size);
    } else {
      discarded_.push_back(
          DiscardedBlock{record->segment(i), record->address(i), record->size, release_ns});
      discarded_bytes_ += aligned;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Per-key calls

template <typename Fn>
std::vector<ErrorCode> MasterService::ForEachKey(absl::Span<const absl::string_view> keys, Fn fn) {
  std::vector<ErrorCode> out(keys.size(), ErrorCode::OBJECT_NOT_FOUND);
  for (size_t i = 0; i < keys.size(); ++i) {
    const absl::string_view key = keys[i];
    if (!ValidKey(key)) {
      out[i] = ErrorCode::INVALID_KEY;
      continue;
    }
    Shard& shard = ShardFor(key);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.objects.find(key);
    if (it != shard.objects.end()) out[i] = fn(shard, it, i);
  }
  return out;
}

absl::StatusOr<std::vector<ErrorCode>> MasterService::BatchExistKey(
    absl::Span<const absl::string_view> keys) {
  if (absl::Status s = CheckBatchSize(keys.size()); !s.ok()) return s;
  const int64_t now = NowNanos();
  const int64_t lease_end = now + LeaseTtlNanos();
  uint64_t hits = 0;
  std::vector<ErrorCode> out = ForEachKey(keys, [&](Shard&, auto it, size_t) {
    ObjectRecord* r = *it;
    if (!r->complete()) return ErrorCode::OBJECT_NOT_FOUND;
    if (unmounts_in_progress_.load() != 0) {
      // A segment is being unmounted: an object whose every replica is on it no longer exists.
      absl::ReaderMutexLock seg_lock(&seg_mu_);
      bool live = DiskLive(*r);
      for (int j = 0; j < r->num_replicas && !live; ++j) live = SegmentLive(r->segment(j));
      if (!live) return ErrorCode::OBJECT_NOT_FOUND;
    }
    r->lease_expiry_ns = std::max(r->lease_expiry_ns, lease_end);
    r->last_use_ns = now;
    ++hits;
    return ErrorCode::OK;
  });
  Add(counters_->exist_calls, 1);
  Add(counters_->exist_keys, keys.size());
  Add(counters_->exist_hits, hits);
  return out;
}

absl::StatusOr<ReplicaListResult> MasterService::BatchGetReplicaList(
    absl::Span<const absl::string_view> keys) {
  if (absl::Status s = CheckBatchSize(keys.size()); !s.ok()) return s;
  const int64_t now = NowNanos();
  const int64_t lease_end = now + LeaseTtlNanos();
  ReplicaListResult result;
  result.lease_ttl = options_.default_kv_lease_ttl;
  result.objects.resize(keys.size());
  // Phase 1, per shard lock: state, lease, replica ids. Phase 2, one segment lock: ids -> names.
  // Segment ids are never reused, so an id read in phase 1 resolves to its own segment or to none.
  std::vector<AllocatedReplica> refs;
  std::vector<uint32_t> ref_begin(keys.size() + 1, 0);
  std::vector<uint32_t> disk_refs;  // per key, the disk copy's segment (0: none); empty if none
  refs.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    ref_begin[i] = static_cast<uint32_t>(refs.size());
    ObjectReplicas& o = result.objects[i];
    const absl::string_view key = keys[i];
    if (!ValidKey(key)) {
      o.error = ErrorCode::INVALID_KEY;
      continue;
    }
    Shard& shard = ShardFor(key);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.objects.find(key);
    if (it == shard.objects.end()) {
      o.error = ErrorCode::OBJECT_NOT_FOUND;
      continue;
    }
    ObjectRecord* r = *it;
    if (!r->complete()) {
      o.error = ErrorCode::REPLICA_IS_NOT_READY;
      continue;
    }
    r->lease_expiry_ns = std::max(r->lease_expiry_ns, lease_end);
    r->last_use_ns = now;
    o.size = r->size;
    for (int j = 0; j < r->num_replicas; ++j) {
      refs.push_back(AllocatedReplica{r->segment(j), r->address(j)});
    }
    if (r->disk_segment != 0) {
      if (disk_refs.empty()) disk_refs.resize(keys.size(), 0);
      disk_refs[i] = r->disk_segment;
    }
  }
  ref_begin[keys.size()] = static_cast<uint32_t>(refs.size());
  uint64_t hits = 0;
  {
    absl::ReaderMutexLock lock(&seg_mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      ObjectReplicas& o = result.objects[i];
      if (o.error != ErrorCode::OK) continue;
      for (uint32_t j = ref_begin[i]; j < ref_begin[i + 1]; ++j) {
        auto it = segments_.find(refs[j].segment_id);
        if (it == segments_.end() || it->second->unmounting) continue;
        o.replicas.push_back(
            ReplicaDesc{it->second->desc.name, refs[j].address, o.size, it->second->desc.instance});
      }
      // The disk copy comes last: readers take a memory replica when there is one.
      if (!disk_refs.empty() && disk_refs[i] != 0) {
        auto it = segments_.find(disk_refs[i]);
        if (it != segments_.end() && !it->second->unmounting) {
          o.replicas.push_back(
              ReplicaDesc{it->second->desc.name, 0, o.size, it->second->desc.instance, true});
        }
      }
      if (o.replicas.empty()) {
        o.error = ErrorCode::OBJECT_NOT_FOUND;
        o.size = 0;
      } else {
        ++hits;
      }
    }
  }
  Add(counters_->get_replica_list_calls, 1);
  Add(counters_->get_replica_list_keys, keys.size());
  Add(counters_->get_replica_list_hits, hits);
  return result;
}

absl::StatusOr<std::vector<ObjectReplicas>> MasterService::BatchPutStart(
    absl::Span<const absl::string_view> keys, absl::Span<const uint64_t> sizes,
    const ReplicateConfig& config, absl::Span<const uint64_t> put_ids) {
  if (absl::Status s = CheckBatchSize(keys.size()); !s.ok()) return s;
  if (sizes.size() != keys.size()) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat(keys.size(), " keys but ", sizes.size(), " sizes"));
  }
  if (!put_ids.empty() && put_ids.size() != keys.size()) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat(keys.size(), " keys but ", put_ids.size(), " put ids"));
  }
  for (uint64_t id : put_ids) {
    if (id == 0) return MakeError(ErrorCode::INVALID_PARAMS, "put ids must not be 0");
  }
  if (config.replica_num < 1 || config.replica_num > kMaxReplicaNum) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("replica_num ", config.replica_num,
                                                             " must be in 1..", kMaxReplicaNum));
  }
  if (config.preferred_segments.size() > 64) {
    return MakeError(ErrorCode::INVALID_PARAMS, "more than 64 preferred segments");
  }
  for (const std::string& name : config.preferred_segments) {
    if (name.size() > kMaxSegmentNameLength) {
      return MakeError(ErrorCode::INVALID_PARAMS, "preferred segment name too long");
    }
  }
  uint8_t flags = 0;
  if (config.with_hard_pin) flags |= ObjectRecord::kHardPin;
  if (config.with_soft_pin) flags |= ObjectRecord::kSoftPin;
  const int64_t now = NowNanos();
  const int64_t discard_ns = absl::ToInt64Nanoseconds(options_.put_start_discard_timeout);

  std::vector<ObjectReplicas> out(keys.size());
  std::vector<AllocatedReplica> allocated;
  std::vector<ObjectRecord*> discarded;
  bool eviction_tried = false;
  uint64_t ok = 0, exists = 0, no_space = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const absl::string_view key = keys[i];
    ObjectReplicas& o = out[i];
    if (!ValidKey(key)) {
      o.error = ErrorCode::INVALID_KEY;
      continue;
    }
    if (sizes[i] == 0 || sizes[i] > kMaxObjectSize) {
      o.error = ErrorCode::INVALID_PARAMS;
      continue;
    }
    Shard& shard = ShardFor(key);
    for (;;) {
      const uint64_t generation = eviction_generation_.load();
      bool evict = false;
      {
        absl::MutexLock lock(&shard.mu);
        auto it = shard.objects.find(key);
        if (it != shard.objects.end() && !put_ids.empty() && (*it)->put_id == put_ids[i] &&
            !(*it)->complete()) {
          // A repeat of this very put (its first answer was lost): the same replicas again.
          ObjectRecord* r = *it;
          absl::ReaderMutexLock seg_lock(&seg_mu_);
          o.error = ErrorCode::OK;
          o.size = r->size;
          o.put_id = r->put_id;
          for (int k = 0; k < r->num_replicas; ++k) {
            auto seg = segments_.find(r->segment(k));
            if (seg == segments_.end() || seg->second->unmounting) {
              o.error = ErrorCode::REPLICA_IS_NOT_READY;  // its segment is going away
              o.replicas.clear();
              break;
            }
            o.replicas.push_back(ReplicaDesc{seg->second->desc.name, r->address(k), r->size,
                                             seg->second->desc.instance});
          }
          if (o.error == ErrorCode::OK) ++ok;
          break;
        }
        if (it != shard.objects.end()) {
          ObjectRecord* old = *it;
          if (old->complete() || now - old->last_use_ns < discard_ns) {
            // A put still in flight is REPLICA_IS_NOT_READY, so a second writer can tell "readable
            // now" from "someone else is writing it" (and wait instead of reporting success).
            o.error = old->complete() ? ErrorCode::OBJECT_ALREADY_EXISTS
                                      : ErrorCode::REPLICA_IS_NOT_READY;
            ++exists;
            break;
          }
          // An abandoned put of the same key: discard it and start afresh.
          shard.objects.erase(it);
          --shard.num_processing;
          DiscardRecord(old, now);
          ObjectRecord::Delete(old);
          Add(counters_->discarded_puts, 1);
        }
        absl::MutexLock seg_lock(&seg_mu_);
        if (AllocateReplicas(sizes[i], config, &allocated)) {
          ObjectRecord* r = ObjectRecord::New(key, sizes[i], flags, now, allocated);
          r->put_id = put_ids.empty() ? next_put_id_.fetch_add(1) : put_ids[i];
          shard.objects.insert(r);
          ++shard.num_processing;
          if (options_.journal != nullptr) {
            options_.journal->ObjectStarted(key, r->put_id, sizes[i], flags, allocated);
          }
          o.error = ErrorCode::OK;
          o.size = sizes[i];
          o.put_id = r->put_id;
          o.replicas.reserve(allocated.size());
          for (const AllocatedReplica& a : allocated) {
            o.replicas.push_back(ReplicaDesc{segments_.at(a.segment_id)->desc.name, a.address,
                                             sizes[i], segments_.at(a.segment_id)->desc.instance});
          }
          ++ok;
          break;
        }
        evict = !eviction_tried && EvictionCouldHelp(sizes[i], config.replica_num);
        if (!evict) {
          o.error = ErrorCode::NO_AVAILABLE_HANDLE;
          ++no_space;
          break;
        }
      }
      // No lock held here: eviction locks every shard in turn. One eviction per batch at most.
      eviction_tried = true;
      absl::MutexLock eviction_lock(&eviction_mu_);
      if (eviction_generation_.load() == generation) Evict(NowNanos());
    }
  }
  Add(counters_->put_start_calls, 1);
  Add(counters_->put_start_keys, keys.size());
  Add(counters_->put_start_ok, ok);
  Add(counters_->put_start_already_exists, exists);
  Add(counters_->put_start_no_space, no_space);
  return out;
}

namespace {
absl::Status CheckPutIds(size_t keys, absl::Span<const uint64_t> put_ids) {
  if (!put_ids.empty() && put_ids.size() != keys) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat(put_ids.size(), " put ids for ", keys, " keys"));
  }
  return CheckBatchSize(keys);
}
}  // namespace

absl::StatusOr<std::vector<ErrorCode>> MasterService::BatchPutEnd(
    absl::Span<const absl::string_view> keys, absl::Span<const uint64_t> put_ids) {
  if (absl::Status s = CheckPutIds(keys.size(), put_ids); !s.ok()) return s;
  const int64_t now = NowNanos();
  std::vector<std::tuple<std::string, uint64_t, uint32_t>> completed;
  std::vector<ErrorCode> out = ForEachKey(keys, [&](Shard& shard, auto it, size_t i) {
    ObjectRecord* r = *it;
    if (!put_ids.empty() && r->put_id != put_ids[i]) {
      return r->complete() ? ErrorCode::OBJECT_ALREADY_EXISTS : ErrorCode::OBJECT_NOT_FOUND;
    }
    if (!r->complete()) {
      r->flags |= ObjectRecord::kComplete;
      r->last_use_ns = now;
      --shard.num_processing;
      if (options_.journal != nullptr) options_.journal->ObjectCompleted(r->key(), r->put_id);
      if (options_.enable_offload && r->num_replicas > 0) {
        completed.emplace_back(std::string(r->key()), r->put_id, r->segment0);
      }
    }
    return ErrorCode::OK;
  });
  if (!completed.empty()) QueueOffload(std::move(completed));
  Add(counters_->put_end_calls, 1);
  Add(counters_->put_end_keys, keys.size());
  return out;
}

absl::StatusOr<std::vector<ErrorCode>> MasterService::BatchPutRevoke(
    absl::Span<const absl::string_view> keys, absl::Span<const uint64_t> put_ids, bool quarantine) {
  if (absl::Status s = CheckPutIds(keys.size(), put_ids); !s.ok()) return s;
  std::vector<ObjectRecord*> victims;
  const int64_t now = NowNanos();
  std::vector<ErrorCode> out = ForEachKey(keys, [&](Shard& shard, auto it, size_t i) {
    ObjectRecord* r = *it;
    if (!put_ids.empty() && r->put_id != put_ids[i]) return ErrorCode::OBJECT_NOT_FOUND;
    if (r->complete()) return ErrorCode::INVALID_WRITE;
    shard.objects.erase(it);
    --shard.num_processing;
    if (quarantine) {
      DiscardRecord(r, now);  // last_use_ns is the put's start
      ObjectRecord::Delete(r);
    } else {
      victims.push_back(r);
      FreeAndDelete(&victims);
    }
    return ErrorCode::OK;
  });
  Add(counters_->put_revoke_calls, 1);
  Add(counters_->put_revoke_keys, keys.size());
  return out;
}

absl::StatusOr<std::vector<ErrorCode>> MasterService::BatchRemove(
    absl::Span<const absl::string_view> keys, bool force) {
  if (absl::Status s = CheckBatchSize(keys.size()); !s.ok()) return s;
  const int64_t now = NowNanos();
  std::vector<ObjectRecord*> victims;
  uint64_t removed = 0;
  std::vector<ErrorCode> out = ForEachKey(keys, [&](Shard& shard, auto it, size_t) {
    ObjectRecord* r = *it;
    if (!r->complete()) return ErrorCode::REPLICA_IS_NOT_READY;
    if (!force && r->held(now)) return ErrorCode::OBJECT_HAS_LEASE;
    shard.objects.erase(it);
    victims.push_back(r);
    NotifyDropped(victims, ObjectDropReason::kRemoved);
    FreeAndDelete(&victims);
    ++removed;
    return ErrorCode::OK;
  });
  Add(counters_->remove_keys, keys.size());
  Add(counters_->removed_objects, removed);
  return out;
}

uint64_t MasterService::RemoveMatching(const RE2* regex, bool force) {
  const int64_t now = NowNanos();
  uint64_t removed = 0;
  std::vector<ObjectRecord*> victims;
  for (size_t s = 0; s < kNumShards; ++s) {
    Shard& shard = shards_[s];
    absl::MutexLock lock(&shard.mu);
    for (auto it = shard.objects.begin(); it != shard.objects.end();) {
      ObjectRecord* r = *it;
      const bool match =
          r->complete() && (force || !r->held(now)) &&
          (regex == nullptr ||
           RE2::PartialMatch(re2::StringPiece(r->key().data(), r->key().size()), *regex));
      if (match) {
        shard.objects.erase(it++);
        victims.push_back(r);
      } else {
        ++it;
      }
    }
    removed += victims.size();
    NotifyDropped(victims, ObjectDropReason::kRemoved);
    FreeAndDelete(&victims);
  }
  Add(counters_->removed_objects, removed);
  return removed;
}

absl::StatusOr<uint64_t> MasterService::RemoveByRegex(absl::string_view regex, bool force) {
  if (regex.size() > kMaxRegexLength) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("regex longer than ", kMaxRegexLength, " bytes"));
  }
  RE2::Options re_options;
  re_options.set_log_errors(false);
  RE2 re(re2::StringPiece(regex.data(), regex.size()), re_options);
  if (!re.ok()) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("bad regex '", regex, "': ", re.error()));
  }
  return RemoveMatching(&re, force);
}

absl::StatusOr<uint64_t> MasterService::RemoveAll(bool force) {
  return RemoveMatching(nullptr, force);
}

// ---------------------------------------------------------------------------------------------
// Introspection

MasterMetrics MasterService::GetMetrics() const {
  MasterMetrics m;
  for (size_t s = 0; s < kNumShards; ++s) {
    absl::MutexLock lock(&shards_[s].mu);
    m.objects += shards_[s].objects.size();
    m.processing_objects += shards_[s].num_processing;
  }
  {
    absl::ReaderMutexLock lock(&seg_mu_);
    m.clients = clients_.size();
    m.segments = allocatable_.size();
    m.capacity_bytes = capacity_bytes_;
    m.allocated_bytes = allocated_bytes_;
    m.discarded_bytes = discarded_bytes_;
  }
  const Counters& c = *counters_;
  m.exist_calls = c.exist_calls.load();
  m.exist_keys = c.exist_keys.load();
  m.exist_hits = c.exist_hits.load();
  m.get_replica_list_calls = c.get_replica_list_calls.load();
  m.get_replica_list_keys = c.get_replica_list_keys.load();
  m.get_replica_list_hits = c.get_replica_list_hits.load();
  m.put_start_calls = c.put_start_calls.load();
  m.put_start_keys = c.put_start_keys.load();
  m.put_start_ok = c.put_start_ok.load();
  m.put_start_already_exists = c.put_start_already_exists.load();
  m.put_start_no_space = c.put_start_no_space.load();
  m.put_end_calls = c.put_end_calls.load();
  m.put_end_keys = c.put_end_keys.load();
  m.put_revoke_calls = c.put_revoke_calls.load();
  m.put_revoke_keys = c.put_revoke_keys.load();
  m.remove_keys = c.remove_keys.load();
  m.removed_objects = c.removed_objects.load();
  m.evicted_objects = c.evicted_objects.load();
  m.evicted_bytes = c.evicted_bytes.load();
  m.eviction_runs = c.eviction_runs.load();
  m.discarded_puts = c.discarded_puts.load();
  m.mount_calls = c.mount_calls.load();
  m.unmount_calls = c.unmount_calls.load();
  m.heartbeat_calls = c.heartbeat_calls.load();
  m.expired_clients = c.expired_clients.load();
  m.dropped_replicas = c.dropped_replicas.load();
  m.offload_tasks = c.offload_tasks.load();
  m.offload_stored = c.offload_stored.load();
  m.offload_recovered = c.offload_recovered.load();
  m.offload_lost = c.offload_lost.load();
  m.offload_refused = c.offload_refused.load();
  m.offload_queue_overflow = c.offload_queue_overflow.load();
  m.evicted_to_disk = c.evicted_to_disk.load();
  return m;
}

absl::Status MasterService::CheckInvariants() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (size_t s = 0; s < kNumShards; ++s) shards_[s].mu.Lock();
  seg_mu_.ReaderLock();
  absl::Status status;
  auto fail = [&status](std::string message) {
    if (status.ok()) status = absl::InternalError(message);
  };
  absl::flat_hash_map<uint32_t, uint64_t> expected;  // segment id -> bytes in use
  for (const DiscardedBlock& b : discarded_) {
    expected[b.segment_id] += SegmentAllocator::AlignedSize(b.size);
  }
  const bool unmounting = unmounts_in_progress_.load() != 0;
  for (size_t s = 0; s < kNumShards; ++s) {
    uint64_t processing = 0;
    for (const ObjectRecord* r : shards_[s].objects) {
      if (!r->complete()) ++processing;
      if (r->num_replicas == 0 && r->disk_segment == 0) {
        fail(absl::StrCat("object ", r->key(), " has no replica"));
      }
      if (r->disk_segment != 0) {
        auto it = segments_.find(r->disk_segment);
        if (it == segments_.end() || (it->second->unmounting && !unmounting)) {
          fail(absl::StrCat("object ", r->key(), " has a disk copy on dead segment ",
                            r->disk_segment));
        }
        if (!r->complete()) fail(absl::StrCat("object ", r->key(), " is on disk unfinished"));
      }
      if (&ShardFor(r->key()) != &shards_[s]) fail(absl::StrCat("object ", r->key(), " misfiled"));
      absl::flat_hash_set<absl::string_view> names;
      for (int j = 0; j < r->num_replicas; ++j) {
        auto it = segments_.find(r->segment(j));
        if (it == segments_.end() || (it->second->unmounting && !unmounting)) {
          fail(absl::StrCat("object ", r->key(), " has a replica in dead segment ", r->segment(j)));
          continue;
        }
        const Segment& seg = *it->second;
        if (!names.insert(seg.desc.name).second) {
          fail(absl::StrCat("object ", r->key(), " has two replicas on ", seg.desc.name));
        }
        if (r->address(j) < seg.desc.base ||
            r->address(j) - seg.desc.base + r->size > seg.desc.size) {
          fail(absl::StrCat("object ", r->key(), " replica outside segment ", seg.desc.name));
        }
        expected[r->segment(j)] += SegmentAllocator::AlignedSize(r->size);
      }
    }
    if (processing != shards_[s].num_processing) {
      fail(absl::StrCat("shard ", s, " counts ", shards_[s].num_processing, " processing, has ",
                        processing));
    }
  }
  uint64_t capacity = 0, allocated = 0;
  for (const auto& [id, seg] : segments_) {
    if (absl::Status a = seg->allocator.CheckInvariants(); !a.ok()) {
      fail(absl::StrCat("segment ", seg->desc.name, ": ", a.message()));
    }
    if (seg->allocator.allocated() + seg->allocator.free_bytes() != seg->desc.size) {
      fail(absl::StrCat("segment ", seg->desc.name, ": allocated + free != mounted"));
    }
    const uint64_t want = expected.contains(id) ? expected[id] : 0;
    if (!unmounting && seg->allocator.allocated() != want) {
      fail(absl::StrCat("segment ", seg->desc.name, " allocator has ", seg->allocator.allocated(),
                        " bytes allocated, objects hold ", want));
    }
    capacity += seg->desc.size;
    allocated += seg->allocator.allocated();
  }
  if (capacity != capacity_bytes_) fail("capacity total drifted");
  if (allocated != allocated_bytes_) fail("allocated total drifted");
  seg_mu_.ReaderUnlock();
  for (size_t s = kNumShards; s > 0; --s) shards_[s - 1].mu.Unlock();
  return status;
}

}  // namespace mooncake
