// DiskTier: a storage process's SSD tier (docs/ssd_tier.md). It owns a DiskStore in the offload
// directory and does two jobs:
//  - write-behind: a thread syncs with the master (MasterClient::OffloadSync) every
//    sync_interval, or at once while there is work: it copies each object the master hands out
//    from this process's own segment into bucket files, and reports what is durable, what its
//    disk lost (watermark eviction, failed checksums) and, after every (re)mount, everything it
//    holds (a restarted process, or a master that forgot this client);
//  - reads: it answers disk read requests from other processes (disk_read_protocol.h) through the
//    transfer engine's service channel, several objects in parallel.
//
//   DiskTierOptions o;  // store dir, client id, master, engine, own segment, mount epoch
//   auto tier = DiskTier::Create(o);   // rebuilds the index from the directory, starts syncing
//   ...
//   (*tier)->Stop();                   // before the engine and the segment go away
#ifndef MOONCAKE_STORE_DISK_TIER_H_
#define MOONCAKE_STORE_DISK_TIER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mooncake/common/executor.h"
#include "mooncake/disk/disk_io.h"
#include "mooncake/disk/disk_store.h"
#include "mooncake/master/master_client.h"
#include "mooncake/master/master_types.h"
#include "mooncake/transfer/transfer_engine.h"

namespace mooncake {

struct DiskTierOptions {
  DiskStoreOptions store;
  ClientId client_id;
  MasterClient* master = nullptr;    // thread-safe; outlives the tier
  TransferEngine* engine = nullptr;  // serves the reads; outlives the tier
  SegmentDesc segment;               // this process's own segment: tasks must lie inside it
  // Moves whenever the segment is (re)mounted (StoreCore::mount_epoch).
  std::function<uint64_t()> mount_epoch;
  absl::Duration sync_interval = absl::Milliseconds(20);
  uint32_t max_tasks = 256;
  int read_threads = 4;
  DiskIo* io = nullptr;  // null: the real file system
};

struct DiskTierStats {
  DiskStoreStats store;
  uint64_t syncs = 0;
  uint64_t sync_errors = 0;
  uint64_t tasks = 0;
  uint64_t served_reads = 0;
  uint64_t served_bytes = 0;
};

class DiskTier {
 public:
  static absl::StatusOr<std::unique_ptr<DiskTier>> Create(DiskTierOptions options);
  ~DiskTier();
  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  // Stop ends syncing and serving. Idempotent.
  void Stop();
  DiskTierStats GetStats() const;
  DiskStore* store() { return store_.get(); }

  // Serve answers one disk read request (the engine's service handler), streaming the reply.
  absl::Status Serve(const std::string& request, ControlReplyStream& reply);

 private:
  explicit DiskTier(DiskTierOptions options);
  void Loop();
  // One sync with the master and the writes it hands out; true if there may be more work now.
  bool SyncOnce();
  // Read buffers are reused (a fresh large one costs page faults on every byte).
  struct Buffer {
    std::unique_ptr<char[]> data;
    uint64_t capacity = 0;
  };
  static constexpr size_t kMaxFreeBuffers = 32;
  Buffer TakeBuffer(uint64_t n);
  // Serve's body, counted in serving_ so Stop waits for it.
  absl::Status ServeCounted(const std::string& request, ControlReplyStream& reply);
  void GiveBuffer(Buffer b);
  // Copies and commits the tasks in bucket-sized groups.
  void WriteTasks(const std::vector<OffloadTask>& tasks);

  const DiskTierOptions options_;
  std::unique_ptr<DiskIo> owned_io_;
  std::unique_ptr<DiskStore> store_;
  // Reads of served requests (their scratch buffers live as long as the threads).
  std::unique_ptr<Executor> readers_;
  absl::Mutex serve_mu_;
  int serving_ ABSL_GUARDED_BY(serve_mu_) = 0;
  absl::Mutex buffers_mu_;
  std::vector<Buffer> free_buffers_ ABSL_GUARDED_BY(buffers_mu_);
  absl::Notification stop_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};

  mutable absl::Mutex mu_;
  std::vector<DiskObjectRef> stored_ ABSL_GUARDED_BY(mu_);  // to report
  std::vector<DiskObjectRef> lost_ ABSL_GUARDED_BY(mu_);    // to report
  uint64_t reported_epoch_ = 0;                             // sync thread only
  bool unsupported_ = false;               // sync thread only: the master runs without the tier
  std::vector<DiskObjectRef> recovering_;  // sync thread only: left of the full report

  std::atomic<uint64_t> syncs_{0}, sync_errors_{0}, tasks_{0};
  std::atomic<uint64_t> served_reads_{0}, served_bytes_{0};
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_DISK_TIER_H_
