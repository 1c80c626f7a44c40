// DiskStore: the SSD tier of one storage process. Objects are kept in bucket files in one
// directory, each written once, whole, and made durable before any of its objects counts as
// stored; an in-memory index maps a key to its record. Opening a directory rebuilds the index from
// the files, so a restarted process gets its objects back. The format is in docs/ssd_tier.md:
//
//   bucket-<16 hex digits>.mcb   records, each padded to 4 KiB: a 64-byte header (magic, version,
//                                key and value lengths, put id, bucket id, CRC-32C of key and
//                                value, CRC-32C of the header), the key, the value
//   tombstones.mcl               append-only log of removed (key, put id, bucket) records
//
// A record whose header or body fails its checksum (a torn write, bit rot) ends the scan of its
// file at Open, and fails its read with FILE_READ_FAIL afterwards: it is never served.
//
//   auto store = DiskStore::Open({.dir = "/ssd/mooncake", .capacity_bytes = 64ull << 30}, io);
//   auto staged = (*store)->Stage({{"k", put_id, ptr, size}});  // copies the bytes
//   DiskStore::CommitResult r = (*store)->Commit(std::move(staged));        // durable, or failed
//   (*store)->Read("k", put_id, dst, size);
//
// Space: when a commit would take the files past capacity_bytes * high_watermark, the oldest
// buckets are deleted first (their objects are in CommitResult::evicted, for the master) until
// the commit fits below that level minus evict_slack.
//
// Thread-safety: every method may be called concurrently; reads run in parallel with each other
// and with a commit's I/O (the lock covers only the index).
#ifndef MOONCAKE_DISK_DISK_STORE_H_
#define MOONCAKE_DISK_DISK_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "mooncake/disk/disk_io.h"

namespace mooncake {

struct DiskStoreOptions {
  std::string dir;
  // Bytes the files may take; 0 = as much as the file system holds (a full disk then fails
  // writes with FILE_WRITE_FAIL, and nothing else).
  uint64_t capacity_bytes = 0;
  // Eviction starts when a commit would pass capacity_bytes * high_watermark...
  double high_watermark = 0.95;
  // ... and frees this fraction of capacity more, so it does not run on every commit.
  double evict_slack = 0.05;
  // A bucket file holds records up to this many bytes (a larger object gets a bucket alone).
  uint64_t bucket_size_limit = 64ull << 20;
};

// ValidateDiskStoreOptions names the first bad field.
absl::Status ValidateDiskStoreOptions(const DiskStoreOptions& options);

// DiskObject names one stored object.
struct DiskObject {
  std::string key;
  uint64_t put_id = 0;
  uint64_t size = 0;
};

struct DiskStoreStats {
  uint64_t objects = 0;
  uint64_t buckets = 0;
  uint64_t used_bytes = 0;    // bytes of the bucket files
  uint64_t stored_bytes = 0;  // bytes of the values they hold live
  // Counters.
  uint64_t committed_objects = 0;
  uint64_t write_errors = 0;  // objects that lost their disk copy to a failed write
  uint64_t read_errors = 0;
  uint64_t checksum_failures = 0;  // reads refused because the record did not verify
  uint64_t evicted_objects = 0;
  uint64_t removed_objects = 0;
  // At Open: records recovered, and files or tails dropped as torn.
  uint64_t recovered_objects = 0;
  uint64_t torn_records = 0;
};

class DiskStore {
 public:
  struct Item {
    std::string key;
    uint64_t put_id = 0;
    const void* data = nullptr;
    uint64_t size = 0;
  };
  // Staged holds copies of objects in the on-disk layout, ready to write.
  class Staged;
  struct StagedDeleter {
    void operator()(Staged* staged) const;
  };
  using StagedPtr = std::unique_ptr<Staged, StagedDeleter>;
  struct CommitResult {
    absl::Status status;              // OK, or why `failed` were not stored
    std::vector<DiskObject> stored;   // durable now (or already held with that put id)
    std::vector<DiskObject> failed;   // not stored; they have no disk copy
    std::vector<DiskObject> evicted;  // deleted to make room; they lost their disk copy
  };

  // Open creates the directory if needed and rebuilds the index from its files; `io` must outlive
  // the store. Unreadable or torn records are dropped and counted, never an error.
  static absl::StatusOr<std::unique_ptr<DiskStore>> Open(const DiskStoreOptions& options,
                                                         DiskIo* io);
  ~DiskStore();
  DiskStore(const DiskStore&) = delete;
  DiskStore& operator=(const DiskStore&) = delete;

  const DiskStoreOptions& options() const { return options_; }

  // Objects the index holds (after Open: what the directory held).
  std::vector<DiskObject> List() const ABSL_LOCKS_EXCLUDED(mu_);
  // Whether `key` is held with this put id (0: any).
  bool Contains(absl::string_view key, uint64_t put_id = 0) const ABSL_LOCKS_EXCLUDED(mu_);

  // Stage copies the items' bytes into records (the only step that reads the callers' memory).
  // Items with an empty key, a key over 4096 bytes, size 0, or a key already in the batch are
  // left out (Commit reports them failed).
  StagedPtr Stage(absl::Span<const Item> items);
  // Commit writes the staged records, one bucket file per bucket_size_limit, each durable before
  // its objects join the index.
  CommitResult Commit(StagedPtr staged) ABSL_LOCKS_EXCLUDED(mu_);

  // Read copies the value of `key` (put id `put_id`, 0: any) into dst, which holds `size` bytes:
  // FILE_NOT_FOUND when not held, INVALID_PARAMS when dst is too small, FILE_READ_FAIL when the
  // disk fails or the record does not verify (the object is then dropped from the index, and
  // `*dropped`, if given, is set).
  absl::Status Read(absl::string_view key, uint64_t put_id, void* dst, uint64_t size,
                    bool* dropped = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  // ReadRange copies value bytes [offset, offset + length) instead (the whole record is still
  // read and checked); INVALID_PARAMS when the range is past the value's end.
  absl::Status ReadRange(absl::string_view key, uint64_t put_id, uint64_t offset, uint64_t length,
                         void* dst, bool* dropped = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  // Find names what is held under `key`, or FILE_NOT_FOUND.
  absl::StatusOr<DiskObject> Find(absl::string_view key) const ABSL_LOCKS_EXCLUDED(mu_);
  // Size of the value of `key`, or FILE_NOT_FOUND.
  absl::StatusOr<uint64_t> SizeOf(absl::string_view key) const ABSL_LOCKS_EXCLUDED(mu_);

  // Remove forgets the objects (each only if held with that put id; 0: any) and logs tombstones,
  // so they stay gone after a restart. Returns how many were held.
  uint64_t Remove(absl::Span<const DiskObject> objects) ABSL_LOCKS_EXCLUDED(mu_);

  DiskStoreStats GetStats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Location {
    uint64_t bucket = 0;
    uint64_t offset = 0;  // of the record
    uint64_t span = 0;    // record bytes, padded
    uint64_t put_id = 0;
    uint64_t size = 0;  // value bytes
    uint32_t key_len = 0;
  };
  struct Bucket {
    std::shared_ptr<DiskFile> file;
    uint64_t file_bytes = 0;
    uint64_t live = 0;                                      // records the index still points at
    std::vector<std::pair<std::string, uint64_t>> records;  // (key, put id), in file order
  };

  DiskStore(const DiskStoreOptions& options, DiskIo* io);
  absl::Status Load();
  void ScanBucket(uint64_t id, const std::string& name);
  void LoadTombstones(std::vector<std::string>* log_records);
  std::string BucketPath(uint64_t id) const;
  // Drops the index entry of `key` (if it is `loc`) and the bucket when it empties.
  void ForgetLocked(absl::string_view key, Location loc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeleteBucketLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes the oldest buckets until `incoming` more bytes fit; appends what they held.
  bool MakeRoomLocked(uint64_t incoming, std::vector<DiskObject>* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AppendTombstones(const std::vector<std::pair<DiskObject, uint64_t>>& dead);

  const DiskStoreOptions options_;
  DiskIo* const io_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Location> index_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Bucket> buckets_ ABSL_GUARDED_BY(mu_);  // oldest first
  uint64_t next_bucket_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t used_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t stored_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Mutex tombstone_mu_ ABSL_ACQUIRED_AFTER(mu_);
  struct Counters;
  std::unique_ptr<Counters> counters_;
};

}  // namespace mooncake

#endif  // MOONCAKE_DISK_DISK_STORE_H_
