#include "mooncake/master/master_service.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <tuple>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"
#include "re2/re2.h"

namespace mooncake {

// One replica outside the record's inline slot.
struct MasterService::ReplicaRef {
  uint64_t address;
  uint32_t segment_id;
};

// ObjectRecord is one object, allocated as a single block with its key bytes trailing the struct
// (56 bytes + key). The shard's hash set holds only the pointer. Replica 0 is inline; replicas
// 1..num_replicas-1 live in `more`. Every replica is `size` bytes.
struct MasterService::ObjectRecord {
  static constexpr uint8_t kComplete = 1;
  static constexpr uint8_t kSoftPin = 2;
  static constexpr uint8_t kHardPin = 4;

  uint64_t size;
  // Which PutStart created it (ObjectReplicas::put_id).
  uint64_t put_id;
  // Read lease end; 0 if never leased. A lease only ever extends.
  int64_t lease_expiry_ns;
  // While PROCESSING: when the put started. Then: the last put-end or lease grant (eviction order).
  int64_t last_use_ns;
  uint64_t address0;
  uint32_t segment0;
  uint16_t key_len;
  uint8_t num_replicas;
  uint8_t flags;
  ReplicaRef* more;

  absl::string_view key() const {
    return absl::string_view(reinterpret_cast<const char*>(this + 1), key_len);
  }
  bool complete() const { return flags & kComplete; }
  bool hard_pinned() const { return flags & kHardPin; }
  bool soft_pinned() const { return flags & kSoftPin; }
  uint32_t segment(int i) const { return i == 0 ? segment0 : more[i - 1].segment_id; }
  uint64_t address(int i) const { return i == 0 ? address0 : more[i - 1].address; }

  static ObjectRecord* New(absl::string_view key, uint64_t size, uint8_t flags, int64_t now_ns,
                           absl::Span<const AllocatedReplica> replicas) {
    void* mem = ::operator new(sizeof(ObjectRecord) + key.size());
    auto* r = new (mem) ObjectRecord();
    r->size = size;
    r->put_id = 0;
    r->lease_expiry_ns = 0;
    r->last_use_ns = now_ns;
    r->key_len = static_cast<uint16_t>(key.size());
    r->flags = flags;
    r->more = nullptr;
    std::memcpy(r + 1, key.data(), key.size());
    r->SetReplicas(replicas);
    return r;
  }

  static void Delete(ObjectRecord* r) {
    delete[] r->more;
    r->~ObjectRecord();
    ::operator delete(r);
  }

  void SetReplicas(absl::Span<const AllocatedReplica> replicas) {
    delete[] more;
    more = nullptr;
    num_replicas = static_cast<uint8_t>(replicas.size());
    if (replicas.empty()) return;
    segment0 = replicas[0].segment_id;
    address0 = replicas[0].address;
    if (replicas.size() > 1) {
      more = new ReplicaRef[replicas.size() - 1];
      for (size_t i = 1; i < replicas.size(); ++i) {
        more[i - 1] = ReplicaRef{replicas[i].address, replicas[i].segment_id};
      }
    }
  }
};

struct MasterService::RecordHash {
  using is_transparent = void;
  size_t operator()(absl::string_view key) const { return absl::Hash<absl::string_view>()(key); }
  size_t operator()(const ObjectRecord* r) const { return (*this)(r->key()); }
};

struct MasterService::RecordEq {
  using is_transparent = void;
  static absl::string_view Key(absl::string_view key) { return key; }
  static absl::string_view Key(const ObjectRecord* r) { return r->key(); }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return Key(a) == Key(b);
  }
};

struct alignas(64) MasterService::Shard {
  absl::Mutex mu;
  // Owns the records.
  absl::flat_hash_set<ObjectRecord*, RecordHash, RecordEq> objects ABSL_GUARDED_BY(mu);
  uint64_t num_processing ABSL_GUARDED_BY(mu) = 0;

  ~Shard() {
    absl::MutexLock lock(&mu);
    for (ObjectRecord* r : objects) ObjectRecord::Delete(r);
  }
};

struct MasterService::Segment {
  Segment(uint32_t id, SegmentDesc desc, ClientId owner)
      : id(id), desc(std::move(desc)), owner(owner), allocator(this->desc.size) {}
  const uint32_t id;
  const SegmentDesc desc;
  const ClientId owner;
  SegmentAllocator allocator;
  // Set when the unmount starts: no new replicas, none handed out.
  bool unmounting = false;
};

struct MasterService::Client {
  int64_t last_heartbeat_ns = 0;
  std::vector<uint32_t> segment_ids;
};

struct MasterService::Counters {
  std::atomic<uint64_t> exist_keys{0};
  std::atomic<uint64_t> exist_hits{0};
  std::atomic<uint64_t> get_replica_list_keys{0};
  std::atomic<uint64_t> get_replica_list_hits{0};
  std::atomic<uint64_t> put_start_keys{0};
  std::atomic<uint64_t> put_start_ok{0};
  std::atomic<uint64_t> put_start_already_exists{0};
  std::atomic<uint64_t> put_start_no_space{0};
  std::atomic<uint64_t> put_end_keys{0};
  std::atomic<uint64_t> put_revoke_keys{0};
  std::atomic<uint64_t> remove_keys{0};
  std::atomic<uint64_t> removed_objects{0};
  std::atomic<uint64_t> evicted_objects{0};
  std::atomic<uint64_t> evicted_bytes{0};
  std::atomic<uint64_t> eviction_runs{0};
  std::atomic<uint64_t> discarded_puts{0};
  std::atomic<uint64_t> mount_calls{0};
  std::atomic<uint64_t> unmount_calls{0};
  std::atomic<uint64_t> heartbeat_calls{0};
  std::atomic<uint64_t> expired_clients{0};
  std::atomic<uint64_t> dropped_replicas{0};
};

namespace {

void Add(std::atomic<uint64_t>& counter, uint64_t n) {
  if (n != 0) counter.fetch_add(n, std::memory_order_relaxed);
}

bool ValidKey(absl::string_view key) { return !key.empty() && key.size() <= kMaxKeyLength; }

absl::Status CheckBatchSize(size_t n) {
  if (n > kMaxBatchKeys) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("batch of ", n, " keys exceeds the limit of ", kMaxBatchKeys));
  }
  return absl::OkStatus();
}

absl::Status ValidateSegmentDesc(const SegmentDesc& segment) {
  if (segment.name.empty() || segment.name.size() > kMaxSegmentNameLength) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("segment name must be 1..", kMaxSegmentNameLength, " bytes"));
  }
  if (segment.size == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("segment ", segment.name, " has size 0"));
  }
  if (segment.base > UINT64_MAX - segment.size) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("segment ", segment.name, " range overflows the address space"));
  }
  return absl::OkStatus();
}

absl::Status ValidateClient(const ClientId& client) {
  if (!client.valid()) return MakeError(ErrorCode::INVALID_PARAMS, "client id 0 is invalid");
  return absl::OkStatus();
}

}  // namespace

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
      shards_(new Shard[kNumShards]),
      rng_(options.seed),
      counters_(new Counters) {
  static_assert(sizeof(void*) != 8 || sizeof(ObjectRecord) <= 56,
                "ObjectRecord grew; it dominates the master's memory per object");
  MC_CHECK(clock_ != nullptr);
  // Never 0 (0 means "no put id"); distinct across restarts of the master.
  next_put_id_ = (Rng(options_.seed ^ static_cast<uint64_t>(clock_->NowNanos())).Next64() >> 1) | 1;
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
// Segments and allocation

bool MasterService::SegmentLive(uint32_t segment_id) const {
  auto it = segments_.find(segment_id);
  return it != segments_.end() && !it->second->unmounting;
}

uint32_t MasterService::PickSegment(uint64_t aligned, absl::Span<const AllocatedReplica> used,
                                    absl::string_view only_name) {
  auto usable = [&](const Segment& s) {
    if (s.unmounting || s.allocator.largest_free_extent() < aligned) return false;
    if (!only_name.empty() && s.desc.name != only_name) return false;
    for (const AllocatedReplica& u : used) {
      if (segments_.at(u.segment_id)->desc.name == s.desc.name) return false;
    }
    return true;
  };
  // Prefer the emptier segment (by free fraction) so new objects spread instead of piling up.
  auto better = [](const Segment& a, const Segment& b) {
    return static_cast<double>(a.allocator.free_bytes()) / static_cast<double>(a.desc.size) >
           static_cast<double>(b.allocator.free_bytes()) / static_cast<double>(b.desc.size);
  };
  if (only_name.empty() && allocatable_.size() > 2) {
    // Best of two random choices: O(1) and close to balanced.
    Segment* a = segments_.at(allocatable_[rng_.Uniform(allocatable_.size())]).get();
    Segment* b = segments_.at(allocatable_[rng_.Uniform(allocatable_.size())]).get();
    const bool ua = usable(*a);
    const bool ub = usable(*b);
    if (ua && ub) return better(*b, *a) ? b->id : a->id;
    if (ua) return a->id;
    if (ub) return b->id;
  }
  Segment* best = nullptr;
  for (uint32_t id : allocatable_) {
    Segment* s = segments_.at(id).get();
    if (usable(*s) && (best == nullptr || better(*s, *best))) best = s;
  }
  return best == nullptr ? 0 : best->id;
}

bool MasterService::AllocateReplicas(uint64_t size, const ReplicateConfig& config,
                                     std::vector<AllocatedReplica>* out) {
  out->clear();
  if (allocatable_names_.size() < static_cast<size_t>(config.replica_num)) return false;
  const uint64_t aligned = SegmentAllocator::AlignedSize(size);
  auto place = [&](uint32_t id) {
    Segment& s = *segments_.at(id);
    auto offset = s.allocator.Allocate(size);
    if (!offset.has_value()) return false;  // unreachable: PickSegment checked the largest extent
    allocated_bytes_ += aligned;
    out->push_back(AllocatedReplica{id, s.desc.base + *offset});
    return true;
  };
  for (const std::string& name : config.preferred_segments) {
    if (static_cast<int>(out->size()) == config.replica_num) break;
    const uint32_t id = PickSegment(aligned, *out, name);
    if (id != 0) place(id);
  }
  while (static_cast<int>(out->size()) < config.replica_num) {
    const uint32_t id = PickSegment(aligned, *out, "");
    if (id == 0 || !place(id)) {
      for (const AllocatedReplica& r : *out) FreeReplica(r.segment_id, r.address, size);
      out->clear();
      return false;
    }
  }
  return true;
}

void MasterService::FreeReplica(uint32_t segment_id, uint64_t address, uint64_t size) {
  auto it = segments_.find(segment_id);
  if (it == segments_.end()) return;  // the segment is gone, and its allocator with it
  Segment& s = *it->second;
  const absl::Status freed = s.allocator.Free(address - s.desc.base, size);
  if (!freed.ok()) {
    MC_LOG(ERROR) << "allocator accounting bug in segment " << s.desc.name << ": " << freed;
    return;
  }
  allocated_bytes_ -= SegmentAllocator::AlignedSize(size);
}

void MasterService::FreeRecordReplicas(const ObjectRecord& record) {
  for (int i = 0; i < record.num_replicas; ++i) {
    FreeReplica(record.segment(i), record.address(i), record.size);
  }
}

bool MasterService::EvictionCouldHelp(uint64_t size, int replica_num) const {
  const uint64_t aligned = SegmentAllocator::AlignedSize(size);
  absl::flat_hash_set<absl::string_view> names;
  for (uint32_t id : allocatable_) {
    const Segment& s = *segments_.at(id);
    if (s.desc.size >= aligned) names.insert(s.desc.name);
  }
  return static_cast<int>(names.size()) >= replica_num;
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
    for (ObjectRecord* r : *records) FreeRecordReplicas(*r);
  }
  for (ObjectRecord* r : *records) ObjectRecord::Delete(r);
  records->clear();
}

void MasterService::DiscardRecord(ObjectRecord* record, int64_t now) {
  const int64_t release_ns =
      record->last_use_ns + absl::ToInt64Nanoseconds(options_.put_start_release_timeout);
  absl::MutexLock lock(&seg_mu_);
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
      bool live = false;
      for (int j = 0; j < r->num_replicas && !live; ++j) live = SegmentLive(r->segment(j));
      if (!live) return ErrorCode::OBJECT_NOT_FOUND;
    }
    r->lease_expiry_ns = std::max(r->lease_expiry_ns, lease_end);
    r->last_use_ns = now;
    ++hits;
    return ErrorCode::OK;
  });
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
      if (o.replicas.empty()) {
        o.error = ErrorCode::OBJECT_NOT_FOUND;
        o.size = 0;
      } else {
        ++hits;
      }
    }
  }
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
  std::vector<ErrorCode> out = ForEachKey(keys, [&](Shard& shard, auto it, size_t i) {
    ObjectRecord* r = *it;
    if (!put_ids.empty() && r->put_id != put_ids[i]) {
      return r->complete() ? ErrorCode::OBJECT_ALREADY_EXISTS : ErrorCode::OBJECT_NOT_FOUND;
    }
    if (!r->complete()) {
      r->flags |= ObjectRecord::kComplete;
      r->last_use_ns = now;
      --shard.num_processing;
    }
    return ErrorCode::OK;
  });
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
    if (!force && r->lease_expiry_ns > now) return ErrorCode::OBJECT_HAS_LEASE;
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
          r->complete() && (force || r->lease_expiry_ns <= now) &&
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
// Eviction

uint64_t MasterService::Evict(int64_t now) {
  // Rank orders eviction: unpinned before soft-pinned, then least recently used first.
  auto rank = [](const ObjectRecord* r) {
    return (r->soft_pinned() ? (uint64_t{1} << 63) : 0) |
           static_cast<uint64_t>(std::max<int64_t>(r->last_use_ns, 0));
  };
  const bool plant = options_.test_only_plant_evict_leased;
  auto evictable = [now, plant](const ObjectRecord* r) {
    return r->complete() && !r->hard_pinned() && (plant || r->lease_expiry_ns <= now);
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
      shard.objects.erase(it++);
      bytes += r->size;
      victims.push_back(r);
    }
    evicted += victims.size();
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
    shard.objects.erase(it);
    bytes += r->size;
    victims.push_back(r);
    NotifyDropped(victims, ObjectDropReason::kEvicted);
    FreeAndDelete(&victims);
    ++evicted;
    --at_threshold;
  }
  Add(counters_->evicted_objects, evicted);
  Add(counters_->evicted_bytes, bytes);
  MC_LOG(DEBUG) << "evicted " << evicted << " objects (" << bytes << " bytes)";
  return evicted;
}

// ---------------------------------------------------------------------------------------------
// Segments and clients

void MasterService::BeginUnmount(uint32_t id) {
  auto it = segments_.find(id);
  if (it == segments_.end() || it->second->unmounting) return;
  Segment& s = *it->second;
  s.unmounting = true;
  // A segment not yet unmounting is always allocatable and counted under its name.
  auto pos = std::find(allocatable_.begin(), allocatable_.end(), id);
  if (pos != allocatable_.end()) allocatable_.erase(pos);
  auto name_it = allocatable_names_.find(s.desc.name);
  if (name_it != allocatable_names_.end() && --name_it->second == 0) {
    allocatable_names_.erase(name_it);
  }
  auto client_it = clients_.find(s.owner);
  if (client_it != clients_.end()) {
    std::vector<uint32_t>& ids = client_it->second->segment_ids;
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  }
}

void MasterService::UnmountSegments(const std::vector<uint32_t>& ids) {
  if (ids.empty()) return;
  // Readers check liveness while the counter is non-zero; raise it before marking.
  unmounts_in_progress_.fetch_add(1);
  {
    absl::MutexLock lock(&seg_mu_);
    for (uint32_t id : ids) BeginUnmount(id);
  }
  const absl::flat_hash_set<uint32_t> dead(ids.begin(), ids.end());
  uint64_t dropped = 0;
  std::vector<AllocatedReplica> kept;
  for (size_t s = 0; s < kNumShards; ++s) {
    Shard& shard = shards_[s];
    absl::MutexLock lock(&shard.mu);
    for (auto it = shard.objects.begin(); it != shard.objects.end();) {
      ObjectRecord* r = *it;
      kept.clear();
      for (int j = 0; j < r->num_replicas; ++j) {
        if (!dead.contains(r->segment(j))) kept.push_back({r->segment(j), r->address(j)});
      }
      if (kept.size() == r->num_replicas) {
        ++it;
        continue;
      }
      dropped += r->num_replicas - kept.size();
      if (kept.empty()) {
        if (r->complete() && options_.on_object_dropped) {
          options_.on_object_dropped(r->key(), ObjectDropReason::kSegmentLost);
        }
        shard.objects.erase(it++);
        if (!r->complete()) --shard.num_processing;
        ObjectRecord::Delete(r);  // nothing to free: its only space was on dead segments
        continue;
      }
      r->SetReplicas(kept);
      ++it;
    }
  }
  {
    absl::MutexLock lock(&seg_mu_);
    for (uint32_t id : ids) {
      auto it = segments_.find(id);
      if (it == segments_.end()) continue;
      const Segment& seg = *it->second;
      MC_LOG(INFO) << "unmounted segment " << seg.desc.name << " base "
                   << absl::StrCat("0x", absl::Hex(seg.desc.base)) << " of client "
                   << seg.owner.ToString();
      capacity_bytes_ -= seg.desc.size;
      allocated_bytes_ -= seg.allocator.allocated();
      segment_ids_.erase(std::make_pair(seg.desc.name, seg.desc.base));
      segments_.erase(it);
    }
    auto keep = std::remove_if(discarded_.begin(), discarded_.end(), [&](const DiscardedBlock& b) {
      return dead.contains(b.segment_id);
    });
    for (auto it = keep; it != discarded_.end(); ++it) {
      discarded_bytes_ -= SegmentAllocator::AlignedSize(it->size);
    }
    discarded_.erase(keep, discarded_.end());
  }
  unmounts_in_progress_.fetch_sub(1);
  Add(counters_->dropped_replicas, dropped);
}

absl::Status MasterService::MountLocked(const ClientId& client, const SegmentDesc& segment) {
  std::vector<uint32_t> victims;
  {
    absl::MutexLock lock(&seg_mu_);
    auto existing = segment_ids_.find(std::make_pair(segment.name, segment.base));
    if (existing != segment_ids_.end()) {
      const Segment& s = *segments_.at(existing->second);
      if (s.owner == client && !s.unmounting) {
        if (s.desc.size == segment.size) return absl::OkStatus();
        return MakeError(ErrorCode::SEGMENT_ALREADY_EXISTS,
                         absl::StrCat("segment ", segment.name, " base 0x", absl::Hex(segment.base),
                                      " is mounted with size ", s.desc.size));
      }
    }
    for (const auto& [id, s] : segments_) {
      if (s->desc.name != segment.name || s->unmounting) continue;
      if (s->owner != client) {
        victims.push_back(id);
      } else if (s->desc.base < segment.base + segment.size &&
                 segment.base < s->desc.base + s->desc.size) {
        return MakeError(ErrorCode::SEGMENT_ALREADY_EXISTS,
                         absl::StrCat("segment ", segment.name, " range overlaps base 0x",
                                      absl::Hex(s->desc.base)));
      }
    }
  }
  if (!victims.empty()) {
    // A transfer-engine segment name belongs to one live process: the old owner is gone.
    MC_LOG(WARNING) << "segment name " << segment.name << " remounted by client "
                    << client.ToString() << "; dropping " << victims.size()
                    << " segment(s) of its previous owner";
    std::sort(victims.begin(), victims.end());
    UnmountSegments(victims);
  }
  absl::MutexLock lock(&seg_mu_);
  const uint32_t id = next_segment_id_++;
  segments_.emplace(id, std::make_unique<Segment>(id, segment, client));
  segment_ids_[std::make_pair(segment.name, segment.base)] = id;
  allocatable_.push_back(id);
  ++allocatable_names_[segment.name];
  capacity_bytes_ += segment.size;
  std::unique_ptr<Client>& c = clients_[client];
  if (c == nullptr) c = std::make_unique<Client>();
  c->last_heartbeat_ns = NowNanos();
  c->segment_ids.push_back(id);
  MC_LOG(INFO) << "mounted segment " << segment.name << " base "
               << absl::StrCat("0x", absl::Hex(segment.base)) << " size " << segment.size
               << " for client " << client.ToString();
  return absl::OkStatus();
}

absl::Status MasterService::MountSegment(const ClientId& client, const SegmentDesc& segment) {
  Add(counters_->mount_calls, 1);
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  if (absl::Status s = ValidateSegmentDesc(segment); !s.ok()) return s;
  absl::MutexLock admin(&admin_mu_);
  return MountLocked(client, segment);
}

absl::Status MasterService::RemountSegment(const ClientId& client,
                                           absl::Span<const SegmentDesc> segments) {
  Add(counters_->mount_calls, 1);
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  if (segments.size() > kMaxBatchKeys) {
    return MakeError(ErrorCode::INVALID_PARAMS, "too many segments");
  }
  for (const SegmentDesc& segment : segments) {
    if (absl::Status s = ValidateSegmentDesc(segment); !s.ok()) return s;
  }
  absl::MutexLock admin(&admin_mu_);
  {
    absl::MutexLock lock(&seg_mu_);
    std::unique_ptr<Client>& c = clients_[client];
    if (c == nullptr) c = std::make_unique<Client>();
    c->last_heartbeat_ns = NowNanos();
  }
  absl::Status first_error;
  for (const SegmentDesc& segment : segments) {
    absl::Status s = MountLocked(client, segment);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  return first_error;
}

absl::Status MasterService::UnmountSegment(const ClientId& client, absl::string_view name,
                                           uint64_t base) {
  Add(counters_->unmount_calls, 1);
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  absl::MutexLock admin(&admin_mu_);
  uint32_t id = 0;
  {
    absl::MutexLock lock(&seg_mu_);
    if (!clients_.contains(client)) {
      return MakeError(ErrorCode::CLIENT_NOT_FOUND,
                       absl::StrCat("client ", client.ToString(), " is not known"));
    }
    auto it = segment_ids_.find(std::make_pair(std::string(name), base));
    if (it == segment_ids_.end() || segments_.at(it->second)->owner != client) {
      return MakeError(ErrorCode::SEGMENT_NOT_FOUND,
                       absl::StrCat("client ", client.ToString(), " has no segment ", name,
                                    " at base 0x", absl::Hex(base)));
    }
    id = it->second;
  }
  UnmountSegments({id});
  return absl::OkStatus();
}

absl::StatusOr<HeartbeatResult> MasterService::Heartbeat(const ClientId& client) {
  Add(counters_->heartbeat_calls, 1);
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  HeartbeatResult result;
  result.client_ttl = options_.client_ttl;
  absl::MutexLock lock(&seg_mu_);
  auto it = clients_.find(client);
  if (it == clients_.end()) {
    result.need_remount = true;
  } else {
    it->second->last_heartbeat_ns = NowNanos();
  }
  return result;
}

std::vector<SegmentStatus> MasterService::ListSegments() const {
  std::vector<SegmentStatus> out;
  {
    absl::ReaderMutexLock lock(&seg_mu_);
    out.reserve(segments_.size());
    for (const auto& [id, s] : segments_) {
      if (s->unmounting) continue;
      out.push_back(SegmentStatus{s->desc, s->owner, s->allocator.allocated()});
    }
  }
  std::sort(out.begin(), out.end(), [](const SegmentStatus& a, const SegmentStatus& b) {
    return std::tie(a.segment.name, a.segment.base) < std::tie(b.segment.name, b.segment.base);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Periodic work

uint64_t MasterService::DiscardAbandonedPuts(int64_t now) {
  const int64_t discard_ns = absl::ToInt64Nanoseconds(options_.put_start_discard_timeout);
  uint64_t discarded = 0;
  for (size_t s = 0; s < kNumShards; ++s) {
    Shard& shard = shards_[s];
    absl::MutexLock lock(&shard.mu);
    if (shard.num_processing == 0) continue;
    for (auto it = shard.objects.begin(); it != shard.objects.end();) {
      ObjectRecord* r = *it;
      if (r->complete() || now - r->last_use_ns < discard_ns) {
        ++it;
        continue;
      }
      shard.objects.erase(it++);
      --shard.num_processing;
      DiscardRecord(r, now);
      ObjectRecord::Delete(r);
      ++discarded;
    }
  }
  Add(counters_->discarded_puts, discarded);
  return discarded;
}

uint64_t MasterService::ReleaseDiscarded(int64_t now) {
  absl::MutexLock lock(&seg_mu_);
  uint64_t released = 0;
  auto keep = std::remove_if(discarded_.begin(), discarded_.end(), [&](const DiscardedBlock& b) {
    if (b.release_ns > now) return false;
    FreeReplica(b.segment_id, b.address, b.size);
    released += SegmentAllocator::AlignedSize(b.size);
    return true;
  });
  discarded_.erase(keep, discarded_.end());
  discarded_bytes_ -= released;
  return released;
}

TickReport MasterService::Tick() {
  TickReport report;
  const int64_t now = NowNanos();
  {
    absl::MutexLock admin(&admin_mu_);
    std::vector<uint32_t> dead;
    {
      absl::MutexLock lock(&seg_mu_);
      const int64_t ttl_ns = absl::ToInt64Nanoseconds(options_.client_ttl);
      for (auto it = clients_.begin(); it != clients_.end();) {
        if (now - it->second->last_heartbeat_ns <= ttl_ns) {
          ++it;
          continue;
        }
        MC_LOG(WARNING) << "client " << it->first.ToString() << " missed its heartbeats for "
                        << absl::FormatDuration(
                               absl::Nanoseconds(now - it->second->last_heartbeat_ns))
                        << "; unmounting its " << it->second->segment_ids.size() << " segment(s)";
        dead.insert(dead.end(), it->second->segment_ids.begin(), it->second->segment_ids.end());
        clients_.erase(it++);
        ++report.expired_clients;
      }
    }
    std::sort(dead.begin(), dead.end());
    UnmountSegments(dead);
    report.unmounted_segments = dead.size();
    Add(counters_->expired_clients, report.expired_clients);

    // A full scan for abandoned puts at most every quarter of the discard timeout (and 1 s).
    const int64_t scan_interval = std::min<int64_t>(
        absl::ToInt64Nanoseconds(options_.put_start_discard_timeout) / 4, 1000000000);
    if (now - last_discard_scan_ns_ >= scan_interval) {
      last_discard_scan_ns_ = now;
      report.discarded_puts = DiscardAbandonedPuts(now);
    }
    report.released_bytes = ReleaseDiscarded(now);
  }
  bool over_watermark = false;
  {
    absl::ReaderMutexLock lock(&seg_mu_);
    // Discarded reservations cannot be evicted, so they do not count toward the watermark.
    over_watermark =
        capacity_bytes_ > 0 &&
        static_cast<double>(allocated_bytes_ - discarded_bytes_) >=
            options_.eviction_high_watermark_ratio * static_cast<double>(capacity_bytes_);
  }
  if (over_watermark) {
    absl::MutexLock lock(&eviction_mu_);
    report.evicted_objects = Evict(now);
  }
  return report;
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
  m.exist_keys = c.exist_keys.load();
  m.exist_hits = c.exist_hits.load();
  m.get_replica_list_keys = c.get_replica_list_keys.load();
  m.get_replica_list_hits = c.get_replica_list_hits.load();
  m.put_start_keys = c.put_start_keys.load();
  m.put_start_ok = c.put_start_ok.load();
  m.put_start_already_exists = c.put_start_already_exists.load();
  m.put_start_no_space = c.put_start_no_space.load();
  m.put_end_keys = c.put_end_keys.load();
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
      if (r->num_replicas == 0) fail(absl::StrCat("object ", r->key(), " has no replica"));
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
