// MasterService: the master's pure logic. It owns the object map (key -> size, state, replicas,
// lease), the mounted segments and their allocators, and client liveness. No threads, no sockets:
// time comes from the injected Clock, and periodic work (client TTL, abandoned puts, watermark
// eviction) runs when the shell calls Tick().
//
//   ManualClock clock;
//   MasterService master(MasterServiceOptions{}, &clock);
//   master.MountSegment(client, {"127.0.0.1:12345", base, 1 << 30});
//   std::vector<absl::string_view> keys = {"k"};
//   std::vector<uint64_t> sizes = {4096};
//   auto started = master.BatchPutStart(keys, sizes, ReplicateConfig{});  // PROCESSING
//   // ... write the bytes to started->at(0).replicas ...
//   master.BatchPutEnd(keys);                                             // COMPLETE
//
// Semantics (docs/compatibility.md section 5):
// - Objects are immutable. PutStart allocates every replica and makes the object PROCESSING; PutEnd
//   makes it COMPLETE (readable); PutRevoke frees it. A PROCESSING object older than
//   put_start_discard_timeout is discarded (its key becomes free); its space stays reserved until
//   put_start_release_timeout after the put started, so a slow writer never scribbles on space that
//   was handed to someone else.
// - Exist and GetReplicaList see only COMPLETE objects and grant a read lease of
//   default_kv_lease_ttl. A leased object is neither evicted nor removed unless forced.
// - Eviction (at the high watermark in Tick, or when an allocation fails) removes eviction_ratio of
//   the evictable objects (COMPLETE, not hard-pinned, lease over), least recently used first and
//   soft-pinned ones last. Ties are broken by key, so a run is deterministic.
// - A segment is (name, base). Replicas of one object are on distinct segment names. A client that
//   misses client_ttl has its segments unmounted: every replica on them is dropped and an object
//   left with no replica is removed, so no address in a dead segment is handed out after the
//   unmount returns. A heartbeat from an unknown client answers need_remount.
//
// Thread-safety: every method may be called concurrently. The object map is split into kNumShards
// shards by key hash, each with its own mutex, so batches on different keys proceed in parallel.
// Lock order: admin_mu_ -> eviction_mu_ -> shard mutexes (in index order when several) -> seg_mu_.
#ifndef MOONCAKE_MASTER_MASTER_SERVICE_H_
#define MOONCAKE_MASTER_MASTER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/rng.h"
#include "mooncake/master/eviction_policy.h"
#include "mooncake/master/master_journal.h"
#include "mooncake/master/master_types.h"
#include "mooncake/master/segment_allocator.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace mooncake {

// Why the master dropped an object (see MasterServiceOptions::on_object_dropped).
enum class ObjectDropReason { kRemoved, kEvicted, kSegmentLost };

// MasterServiceOptions are the master's tunables; names follow mooncake_master's flags.
struct MasterServiceOptions {
  // Read lease granted by exist and get-replica-list (--default_kv_lease_ttl, ms).
  absl::Duration default_kv_lease_ttl = absl::Milliseconds(10000);
  // Tick evicts when allocated / capacity reaches this, in (0, 1].
  double eviction_high_watermark_ratio = 0.9;
  // Fraction of evictable objects one eviction run removes, in (0, 1].
  double eviction_ratio = 0.05;
  // A client silent this long is dead (--client_ttl, s).
  absl::Duration client_ttl = absl::Seconds(10);
  // A PROCESSING object this old is discarded and its key freed.
  absl::Duration put_start_discard_timeout = absl::Seconds(30);
  // A discarded put's space is reused only this long after the put started (>= discard timeout).
  absl::Duration put_start_release_timeout = absl::Seconds(600);
  // Seed of the segment-choice randomness (same seed and calls -> same placement).
  uint64_t seed = 0x6d6f6f6e63616b65;
  // Audit hook: called for every COMPLETE object the master drops, with the reason, under the
  // master's locks (it must not call the service). The simulator's invariant checker uses it.
  std::function<void(absl::string_view key, ObjectDropReason reason)> on_object_dropped;
  // Which objects eviction may take, in what order; null: LruEvictionPolicy (the contract above).
  std::shared_ptr<const EvictionPolicy> eviction_policy;
  // Receives every durable change (master_journal.h); null: none. Not owned; must outlive the
  // service. High availability ships it to the standby masters.
  MasterJournal* journal = nullptr;
  // A gap between two Ticks longer than this means the master itself was stalled (SIGSTOP, a
  // frozen VM): clients could not be heard meanwhile, so each gets a whole client_ttl from the
  // end of the gap. Zero turns this off (tests that jump a manual clock).
  absl::Duration tick_stall_threshold = absl::ZeroDuration();
  // The SSD tier (--enable_offload, docs/ssd_tier.md): every object completed on a segment whose
  // owner runs a disk tier is queued for that owner's disk (OffloadSync hands it out); eviction
  // then frees the memory of objects with a disk copy and keeps them readable from disk.
  bool enable_offload = false;
};

// ValidateMasterServiceOptions names the first option out of range.
absl::Status ValidateMasterServiceOptions(const MasterServiceOptions& options);

// MasterMetrics is a snapshot of gauges and monotonic counters.
struct MasterMetrics {
  // Gauges.
  uint64_t clients = 0;
  uint64_t segments = 0;
  uint64_t capacity_bytes = 0;
  uint64_t allocated_bytes = 0;
  uint64_t objects = 0;
  uint64_t processing_objects = 0;
  uint64_t discarded_bytes = 0;  // reserved by discarded puts, awaiting release
  // Counters (keys, not RPCs, unless named *_calls).
  // Calls and keys per data RPC: calls / keys is the batch size, calls per client batch the
  // round trips (docs/benchmarks.md, cluster throughput).
  uint64_t exist_calls = 0;
  uint64_t exist_keys = 0;
  uint64_t exist_hits = 0;
  uint64_t get_replica_list_calls = 0;
  uint64_t get_replica_list_keys = 0;
  uint64_t get_replica_list_hits = 0;
  uint64_t put_start_calls = 0;
  uint64_t put_start_keys = 0;
  uint64_t put_start_ok = 0;
  uint64_t put_start_already_exists = 0;
  uint64_t put_start_no_space = 0;
  uint64_t put_end_calls = 0;
  uint64_t put_end_keys = 0;
  uint64_t put_revoke_calls = 0;
  uint64_t put_revoke_keys = 0;
  uint64_t remove_keys = 0;
  uint64_t removed_objects = 0;  // by remove, remove-by-regex and remove-all
  uint64_t evicted_objects = 0;
  uint64_t evicted_bytes = 0;
  uint64_t eviction_runs = 0;
  uint64_t discarded_puts = 0;
  uint64_t mount_calls = 0;
  uint64_t unmount_calls = 0;
  uint64_t heartbeat_calls = 0;
  uint64_t expired_clients = 0;
  uint64_t dropped_replicas = 0;  // lost with an unmounted segment
  // The SSD tier (keys).
  uint64_t offload_tasks = 0;           // handed to tiers to write
  uint64_t offload_stored = 0;          // reported durable
  uint64_t offload_recovered = 0;       // made objects again from a restarted tier
  uint64_t offload_lost = 0;            // disk copies reported lost
  uint64_t offload_refused = 0;         // reports refused (the key names another put, or is gone)
  uint64_t offload_queue_overflow = 0;  // queued objects dropped from a full queue, never written
  uint64_t evicted_to_disk = 0;         // evictions that freed memory and kept the disk copy
  // Filled in by MasterServer, not the service: connections and calls refused for a missing or
  // wrong MC_AUTH_TOKEN (gRPC, fast RPC, metadata writes).
  uint64_t auth_refusals = 0;
};

// TickReport says what one Tick() did.
struct TickReport {
  uint64_t expired_clients = 0;
  uint64_t unmounted_segments = 0;
  uint64_t discarded_puts = 0;
  uint64_t released_bytes = 0;
  uint64_t evicted_objects = 0;
};

class MasterService {
 public:
  // kNumShards is the number of object-map shards (each with its own lock).
  static constexpr size_t kNumShards = 256;

  // `clock` must outlive the service. `options` must be valid (ValidateMasterServiceOptions).
  MasterService(const MasterServiceOptions& options, Clock* clock);
  ~MasterService();

  MasterService(const MasterService&) = delete;
  MasterService& operator=(const MasterService&) = delete;

  const MasterServiceOptions& options() const { return options_; }

  // Per-key calls. A batch error (more than kMaxBatchKeys keys, mismatched lengths, bad config)
  // rejects the whole call with INVALID_PARAMS and changes nothing; otherwise there is one result
  // per key, in order. An empty or over-long key gets INVALID_KEY.

  // BatchExistKey: OK if a COMPLETE object exists (it is then leased), OBJECT_NOT_FOUND if not.
  absl::StatusOr<std::vector<ErrorCode>> BatchExistKey(absl::Span<const absl::string_view> keys);

  // BatchGetReplicaList: the replicas of each COMPLETE object (leased), OBJECT_NOT_FOUND, or
  // REPLICA_IS_NOT_READY while it is PROCESSING.
  absl::StatusOr<ReplicaListResult> BatchGetReplicaList(absl::Span<const absl::string_view> keys);

  // BatchPutStart allocates replicas for each new key: OK with the replicas to write,
  // OBJECT_ALREADY_EXISTS (a COMPLETE object), REPLICA_IS_NOT_READY (another put of the key is in
  // flight), NO_AVAILABLE_HANDLE (no room even after evicting), or INVALID_PARAMS (size 0 or above
  // kMaxObjectSize). replica_num must be in [1, kMaxReplicaNum]. `put_ids` is empty (the master
  // names each put) or has a nonzero id per key chosen by the caller: a key already held by a put
  // with that id (a repeat of a call whose answer was lost) answers OK with that put's replicas
  // again, and nothing more is allocated.
  absl::StatusOr<std::vector<ObjectReplicas>> BatchPutStart(
      absl::Span<const absl::string_view> keys, absl::Span<const uint64_t> sizes,
      const ReplicateConfig& config, absl::Span<const uint64_t> put_ids = {});

  // BatchPutEnd makes PROCESSING objects COMPLETE (OK again if already COMPLETE), OBJECT_NOT_FOUND
  // otherwise. `put_ids` is empty or has, per key, the put_id PutStart returned: then a key held
  // by another put (this one was dropped meanwhile) is OBJECT_NOT_FOUND while that put is in
  // flight and OBJECT_ALREADY_EXISTS once it completed, and is left alone.
  absl::StatusOr<std::vector<ErrorCode>> BatchPutEnd(absl::Span<const absl::string_view> keys,
                                                     absl::Span<const uint64_t> put_ids = {});

  // BatchPutRevoke frees PROCESSING objects; INVALID_WRITE for a COMPLETE one, OBJECT_NOT_FOUND.
  // With `put_ids`, another put of the key is OBJECT_NOT_FOUND and is never freed (its writer may
  // still be writing into its space). With `quarantine` the key is free at once, but the space is
  // reserved like a discarded put's until put_start_release_timeout after the put started (a
  // write the writer could not call back may still land there).
  absl::StatusOr<std::vector<ErrorCode>> BatchPutRevoke(absl::Span<const absl::string_view> keys,
                                                        absl::Span<const uint64_t> put_ids = {},
                                                        bool quarantine = false);

  // BatchRemove removes COMPLETE objects: OBJECT_HAS_LEASE while leased unless `force`,
  // REPLICA_IS_NOT_READY while PROCESSING (revoke those), OBJECT_NOT_FOUND.
  absl::StatusOr<std::vector<ErrorCode>> BatchRemove(absl::Span<const absl::string_view> keys,
                                                     bool force);

  // RemoveByRegex removes the COMPLETE objects whose key contains a match of the RE2 `regex`
  // (leased ones only if `force`) and returns how many. A bad regex is INVALID_PARAMS.
  absl::StatusOr<uint64_t> RemoveByRegex(absl::string_view regex, bool force);

  // RemoveAll removes every COMPLETE object (leased ones only if `force`) and returns how many.
  absl::StatusOr<uint64_t> RemoveAll(bool force);

  // MountSegment adds `segment` to the pool, owned by `client` (registering the client). Mounting
  // the same (name, base, size) again is OK. A name held by another client means that client's
  // process is gone (a transfer-engine name is one live process): its segments of that name are
  // unmounted first. Errors: INVALID_PARAMS (invalid client, empty name, size 0, range overflows),
  // SEGMENT_ALREADY_EXISTS (overlaps a different range of the same name).
  absl::Status MountSegment(const ClientId& client, const SegmentDesc& segment);

  // RemountSegment re-registers a client the master forgot and mounts all its segments (those
  // already mounted stay). Any invalid segment rejects the call before anything changes.
  absl::Status RemountSegment(const ClientId& client, absl::Span<const SegmentDesc> segments);

  // UnmountSegment removes one segment of `client`; its replicas are dropped. CLIENT_NOT_FOUND,
  // SEGMENT_NOT_FOUND (not mounted by this client).
  absl::Status UnmountSegment(const ClientId& client, absl::string_view name, uint64_t base);

  // Heartbeat records that `client` is alive, or answers need_remount if the master does not know
  // it. INVALID_PARAMS for the invalid id.
  absl::StatusOr<HeartbeatResult> Heartbeat(const ClientId& client);

  // OffloadSync is the SSD tier of `client`'s process talking to the master (OffloadSyncRequest):
  // reported copies are recorded (a refused one comes back in `drop`), lost ones forgotten (an
  // object left with no copy is gone), and up to max_tasks queued objects are handed out, held
  // (not evicted, not removed unless forced) until reported stored or lost.
  // NOT_SUPPORTED without enable_offload; CLIENT_NOT_FOUND for an unknown client;
  // INVALID_PARAMS for a client with no mounted segment or lists over kMaxBatchKeys.
  absl::StatusOr<OffloadSyncResult> OffloadSync(const ClientId& client,
                                                const OffloadSyncRequest& request);

  // ListSegments returns every mounted segment, ordered by (name, base).
  std::vector<SegmentStatus> ListSegments() const;

  // Tick runs the periodic work: unmounts segments of clients silent for client_ttl, discards
  // abandoned puts and releases their space when due, and evicts at the high watermark.
  TickReport Tick();

  // Snapshot copies the durable state (master_journal.h) at one instant. `at_cut`, if set, runs at
  // that instant, while no change can happen: a journal consumer registered there sees exactly
  // the changes after the snapshot.
  MasterSnapshot Snapshot(const std::function<void()>& at_cut = nullptr) const;

  // Restore replaces the whole state by `snapshot` (a standby taking over): segments get new ids,
  // every owner counts as heard from now, every object is leased for default_kv_lease_ttl from
  // now, reservations run for their remaining time. Nothing is journaled. A replica that does not
  // fit its segment (a corrupt snapshot) is dropped, and an error names the first; the rest is
  // restored.
  absl::Status Restore(const MasterSnapshot& snapshot);

  // GetMetrics returns current gauges and counters.
  MasterMetrics GetMetrics() const;

  // CheckInvariants verifies, under every lock: each allocator's allocated + free == mounted size,
  // allocated bytes equal the replicas of live objects plus discarded reservations, every replica
  // is in a mounted segment, replicas of one object are on distinct names. For tests and the
  // simulator.
  absl::Status CheckInvariants() const;

 private:
  struct ReplicaRef;
  struct ObjectRecord;
  struct RecordHash;
  struct RecordEq;
  struct Shard;
  struct Segment;
  struct Client;
  struct Counters;
  struct DiscardedBlock {
    uint32_t segment_id;
    uint64_t address;
    uint64_t size;
    int64_t release_ns;
  };
  using AllocatedReplica = MasterSnapshot::Replica;

  Shard& ShardFor(absl::string_view key) const;
  // ForEachKey is the loop of the per-key calls: INVALID_KEY for a malformed key,
  // OBJECT_NOT_FOUND for a missing one, otherwise what fn(shard, it, i) returns, where `it` points
  // at the key's record, `i` is the key's index and fn runs under the key's shard lock.
  template <typename Fn>
  std::vector<ErrorCode> ForEachKey(absl::Span<const absl::string_view> keys, Fn fn);
  int64_t NowNanos() const { return clock_->NowNanos(); }
  int64_t LeaseTtlNanos() const { return absl::ToInt64Nanoseconds(options_.default_kv_lease_ttl); }

  // Allocates config.replica_num replicas of `size` bytes on distinct names, preferred segments
  // first; on failure allocates nothing and returns false.
  bool AllocateReplicas(uint64_t size, const ReplicateConfig& config,
                        std::vector<AllocatedReplica>* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(seg_mu_);
  // Returns the id of a segment with a free extent of `aligned` bytes whose name differs from those
  // of `used` (and equals `only_name` if set), preferring the emptier of two random picks, then the
  // emptiest overall; 0 if there is none.
  uint32_t PickSegment(uint64_t aligned, absl::Span<const AllocatedReplica> used,
                       absl::string_view only_name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(seg_mu_);
  // Whether evicting could make room: enough distinct names with segments big enough.
  bool EvictionCouldHelp(uint64_t size, int replica_num) const ABSL_SHARED_LOCKS_REQUIRED(seg_mu_);
  // Frees one replica; a segment already gone is skipped (its allocator went with it).
  void FreeReplica(uint32_t segment_id, uint64_t address, uint64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(seg_mu_);
  void FreeRecordReplicas(const ObjectRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(seg_mu_);
  // Queues the disk copy of a dropped record for deletion by its holder (no-op without one).
  void QueueDiskDrop(const ObjectRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(seg_mu_);
  // Queues just-completed objects (key, put id, segment of replica 0) for their owners' disks.
  void QueueOffload(std::vector<std::tuple<std::string, uint64_t, uint32_t>> completed)
      ABSL_LOCKS_EXCLUDED(seg_mu_);
  // The record's disk copy is usable: its segment is mounted and not being unmounted.
  bool DiskLive(const ObjectRecord& record) const ABSL_SHARED_LOCKS_REQUIRED(seg_mu_);
  // Whether a replica may be handed out: its segment is mounted and not being unmounted.
  bool SegmentLive(uint32_t segment_id) const ABSL_SHARED_LOCKS_REQUIRED(seg_mu_);

  // Tells on_object_dropped about COMPLETE records being dropped.
  void NotifyDropped(const std::vector<ObjectRecord*>& records, ObjectDropReason reason) const;
  // Frees the space of records already taken out of their shard, deletes them, clears the vector.
  void FreeAndDelete(std::vector<ObjectRecord*>* records) ABSL_LOCKS_EXCLUDED(seg_mu_);
  // Reserves the space of a discarded PROCESSING record until its release time (or frees it if that
  // has passed). The record is already out of its shard; the caller deletes it.
  void DiscardRecord(ObjectRecord* record, int64_t now) ABSL_LOCKS_EXCLUDED(seg_mu_);
  // Removes COMPLETE objects matching `regex` (all if null), leased ones only if `force`.
  uint64_t RemoveMatching(const re2::RE2* regex, bool force);

  // Runs one eviction pass over all shards; returns the number of objects evicted.
  uint64_t Evict(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(eviction_mu_);

  // Unmounts segments `ids`: marks them, drops their replicas from every object (removing objects
  // left with none), then forgets them and their allocators.
  void UnmountSegments(const std::vector<uint32_t>& ids) ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_);
  // Marks a segment unmounting and detaches it from its owner and the allocatable list.
  void BeginUnmount(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(seg_mu_);
  // Mounts one validated segment.
  absl::Status MountLocked(const ClientId& client, const SegmentDesc& segment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_);

  uint64_t DiscardAbandonedPuts(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_);
  uint64_t ReleaseDiscarded(int64_t now) ABSL_LOCKS_EXCLUDED(seg_mu_);

  const MasterServiceOptions options_;
  Clock* const clock_;
  const std::shared_ptr<const EvictionPolicy> policy_;

  // Serializes mount, remount, unmount and the liveness part of Tick (rare, may scan all shards).
  absl::Mutex admin_mu_;

  // Object map. The array itself is constant after construction.
  std::unique_ptr<Shard[]> shards_;

  // Segments, clients and allocation.
  mutable absl::Mutex seg_mu_;
  absl::flat_hash_map<uint32_t, std::unique_ptr<Segment>> segments_ ABSL_GUARDED_BY(seg_mu_);
  // (name, base) -> segment id, for every mounted segment (unmounting ones included).
  absl::flat_hash_map<std::pair<std::string, uint64_t>, uint32_t> segment_ids_
      ABSL_GUARDED_BY(seg_mu_);
  // name -> number of allocatable segments with that name.
  absl::flat_hash_map<std::string, uint32_t> allocatable_names_ ABSL_GUARDED_BY(seg_mu_);
  // Ids of segments that may receive new replicas (mounted, not unmounting).
  std::vector<uint32_t> allocatable_ ABSL_GUARDED_BY(seg_mu_);
  absl::flat_hash_map<ClientId, std::unique_ptr<Client>> clients_ ABSL_GUARDED_BY(seg_mu_);
  std::vector<DiscardedBlock> discarded_ ABSL_GUARDED_BY(seg_mu_);
  uint64_t discarded_bytes_ ABSL_GUARDED_BY(seg_mu_) = 0;
  // Segment ids are never reused, so a stale id can only fail to resolve.
  uint32_t next_segment_id_ ABSL_GUARDED_BY(seg_mu_) = 1;
  uint64_t capacity_bytes_ ABSL_GUARDED_BY(seg_mu_) = 0;
  uint64_t allocated_bytes_ ABSL_GUARDED_BY(seg_mu_) = 0;
  Rng rng_ ABSL_GUARDED_BY(seg_mu_);

  // Non-zero while some segment is being unmounted; readers then check replica liveness. Set
  // before a segment is marked, cleared after its replicas are gone.
  std::atomic<int> unmounts_in_progress_{0};

  // One eviction at a time; a waiter whose allocation failed skips its own run if another finished
  // meanwhile (the generation moved).
  absl::Mutex eviction_mu_;
  std::atomic<uint64_t> eviction_generation_{0};

  // Put ids start at a value derived from the seed and the start time, so ids of a restarted
  // master do not repeat the previous one's.
  std::atomic<uint64_t> next_put_id_{0};

  int64_t last_discard_scan_ns_ ABSL_GUARDED_BY(admin_mu_) = 0;
  int64_t last_tick_ns_ ABSL_GUARDED_BY(admin_mu_) = 0;

  std::unique_ptr<Counters> counters_;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_SERVICE_H_
