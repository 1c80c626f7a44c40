// MasterService's private records and helpers, shared by its three parts: objects and the per-key
// calls (master_service.cc), segments, clients and periodic work (master_segments.cc), eviction
// (master_eviction.cc).
#ifndef MOONCAKE_MASTER_MASTER_SERVICE_INTERNAL_H_
#define MOONCAKE_MASTER_MASTER_SERVICE_INTERNAL_H_

#include <atomic>
#include <cstring>
#include <deque>
#include <new>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/master/master_service.h"

namespace mooncake {

// One replica outside the record's inline slot.
struct MasterService::ReplicaRef {
  uint64_t address;
  uint32_t segment_id;
};

// ObjectRecord is one object, allocated as a single block with its key bytes trailing the struct
// (64 bytes + key). The shard's hash set holds only the pointer. Replica 0 is inline; replicas
// 1..num_replicas-1 live in `more`. Every replica is `size` bytes. An object with a copy in an
// SSD tier names it by `disk_segment` (the id of a segment of the process holding it); such an
// object may have no memory replica at all (it was evicted from memory).
struct MasterService::ObjectRecord {
  static constexpr uint8_t kComplete = kObjectComplete;
  static constexpr uint8_t kSoftPin = kObjectSoftPin;
  static constexpr uint8_t kHardPin = kObjectHardPin;
  static constexpr uint8_t kOffloading = kObjectOffloading;

  uint64_t size;
  // Which PutStart created it (ObjectReplicas::put_id).
  uint64_t put_id;
  // Read lease end; 0 if never leased. A lease only ever extends.
  int64_t lease_expiry_ns;
  // While PROCESSING: when the put started. Then: the last put-end or lease grant (eviction order).
  int64_t last_use_ns;
  uint64_t address0;
  uint32_t segment0;
  uint32_t disk_segment;  // 0: no disk copy
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
  bool offloading() const { return flags & kOffloading; }
  // Held: not removed unless forced (a read lease, or an SSD tier copying it).
  bool held(int64_t now_ns) const { return lease_expiry_ns > now_ns || offloading(); }
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
    r->disk_segment = 0;
    r->segment0 = 0;
    r->address0 = 0;
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
  // The SSD tier (master_offload.cc): set once the client's tier synced. Objects completed on its
  // segments wait in offload_queue (key, put id) to be written; disk copies of removed objects
  // wait in disk_drops to be deleted. Both bounded by kMaxOffloadQueue (oldest dropped).
  bool offload = false;
  std::deque<std::pair<std::string, uint64_t>> offload_queue;
  std::deque<DiskObjectRef> disk_drops;
};

struct MasterService::Counters {
  std::atomic<uint64_t> exist_calls{0};
  std::atomic<uint64_t> exist_keys{0};
  std::atomic<uint64_t> exist_hits{0};
  std::atomic<uint64_t> get_replica_list_calls{0};
  std::atomic<uint64_t> get_replica_list_keys{0};
  std::atomic<uint64_t> get_replica_list_hits{0};
  std::atomic<uint64_t> put_start_calls{0};
  std::atomic<uint64_t> put_start_keys{0};
  std::atomic<uint64_t> put_start_ok{0};
  std::atomic<uint64_t> put_start_already_exists{0};
  std::atomic<uint64_t> put_start_no_space{0};
  std::atomic<uint64_t> put_end_calls{0};
  std::atomic<uint64_t> put_end_keys{0};
  std::atomic<uint64_t> put_revoke_calls{0};
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
  std::atomic<uint64_t> offload_tasks{0};
  std::atomic<uint64_t> offload_stored{0};
  std::atomic<uint64_t> offload_recovered{0};
  std::atomic<uint64_t> offload_lost{0};
  std::atomic<uint64_t> offload_refused{0};
  std::atomic<uint64_t> offload_queue_overflow{0};
  std::atomic<uint64_t> evicted_to_disk{0};
};

namespace master_internal {

inline void Add(std::atomic<uint64_t>& counter, uint64_t n) {
  if (n != 0) counter.fetch_add(n, std::memory_order_relaxed);
}

inline bool ValidKey(absl::string_view key) { return !key.empty() && key.size() <= kMaxKeyLength; }

inline absl::Status CheckBatchSize(size_t n) {
  if (n > kMaxBatchKeys) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("batch of ", n, " keys exceeds the limit of ", kMaxBatchKeys));
  }
  return absl::OkStatus();
}

inline absl::Status ValidateSegmentDesc(const SegmentDesc& segment) {
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

inline absl::Status ValidateClient(const ClientId& client) {
  if (!client.valid()) return MakeError(ErrorCode::INVALID_PARAMS, "client id 0 is invalid");
  return absl::OkStatus();
}

}  // namespace master_internal

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_SERVICE_INTERNAL_H_
