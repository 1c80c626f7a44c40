// StoreCore: the store client's logic, event-driven. Every operation takes a completion callback
// and never blocks: master calls go through a MasterChannel, bytes through a DataPath, time comes
// from a Clock and waits from a Timer. The production StoreClient runs it with inline seams (the
// sync API); the simulator runs the same code with simulated RPC, verbs and time.
//
//   StoreCore core(options);                     // seams, client id, own segment (size 0: none)
//   core.Mount([](absl::Status s) { ... });
//   core.BatchPut(keys, buffers, ReplicateConfig(), [](std::vector<int> rc) { ... });
//   core.BatchGet(keys, buffers, [](std::vector<int64_t> rc) { ... });
//
// Results follow the Python contract (docs/compatibility.md section 2): per key 0 / 1 / bytes read
// on success, a negative ErrorCode on failure. Every callback runs exactly once.
//
// Put: put-start (the master allocates), write every replica, put-end (or revoke on failure). A
// key another writer is still putting is waited for (up to put_wait_timeout): the put answers 0
// only once the object is readable, and writes it itself if the other writer gave up. Put ids are
// chosen here, so a put-start whose answer was lost can be repeated or revoked safely; a put
// whose writes may still land (IsUnsettledWrite) is revoked into quarantine, so its space is not
// handed to another object meanwhile.
// Get: replica list (which leases the object), read the closest replica, and LEASE_EXPIRED if the
// lease ran out before the bytes arrived (the space may have been reused by then). The list comes
// from the exist call just before when there was one (ReplicaCache): one master round trip for
// SGLang's exist-then-get instead of two.
//
// Thread-safety: operations may be started from several threads if the seams are thread-safe;
// the core keeps no mutable state outside each operation except the mounted flag and the
// (thread-safe) replica cache.
#ifndef MOONCAKE_STORE_STORE_CORE_H_
#define MOONCAKE_STORE_STORE_CORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/master/master_types.h"
#include "mooncake/store/data_path.h"
#include "mooncake/store/master_channel.h"
#include "mooncake/store/replica_cache.h"

namespace mooncake {

// A caller buffer: `size` bytes at `ptr`.
struct BufferRef {
  void* ptr = nullptr;
  uint64_t size = 0;
};

// Timer runs `fn` after `delay` (production: sleeps on the calling thread; sim: an event).
using Timer = std::function<void(absl::Duration delay, std::function<void()> fn)>;

struct StoreCoreOptions {
  ClientId client_id;
  SegmentDesc segment;  // this client's contribution to the pool; size 0 for a pure client
  MasterChannel* master = nullptr;
  DataPath* data = nullptr;
  Clock* clock = nullptr;
  Timer timer;
  // How long a put waits for another writer of the same key, and how often it looks.
  absl::Duration put_wait_timeout = absl::Seconds(5);
  absl::Duration put_wait_interval = absl::Milliseconds(2);
  // Exist calls keep the replica lists they brought back for this many keys, so a get of keys
  // just found asks the master nothing (replica_cache.h); 0: exist asks only whether they exist.
  size_t replica_cache_entries = 16384;
};

class StoreCore {
 public:
  // The seams must outlive the core and every operation it started.
  explicit StoreCore(StoreCoreOptions options);

  const ClientId& client_id() const { return options_.client_id; }
  // The own segment as mounted now: its instance changes when a remount fences inbound writes.
  SegmentDesc segment() const;
  bool mounted() const { return mounted_.load(); }
  // mount_epoch counts successful mounts and remounts: it moves when the master (re)learned this
  // client, so state only the client holds (its SSD tier's objects) must be told again.
  uint64_t mount_epoch() const { return mount_epoch_.load(); }

  // Mount / Unmount the own segment (OK at once for a pure client).
  void Mount(std::function<void(absl::Status)> done);
  void Unmount(std::function<void(absl::Status)> done);
  // Heartbeat tells the master this client lives, and remounts the segment when the master had
  // forgotten it (restart, or client_ttl missed during a partition).
  void Heartbeat(std::function<void(absl::Status)> done);

  // Per key: 1 exists, 0 missing, negative ErrorCode.
  void BatchIsExist(std::vector<std::string> keys, std::function<void(std::vector<int>)> done);
  // Per key: 0 stored (or already present and readable), negative ErrorCode. The object is the
  // concatenation of the key's buffers.
  void BatchPut(std::vector<std::string> keys, std::vector<std::vector<BufferRef>> buffers,
                ReplicateConfig config, std::function<void(std::vector<int>)> done);
  // Per key: bytes read, or a negative ErrorCode. The object is scattered across the buffers.
  void BatchGet(std::vector<std::string> keys, std::vector<std::vector<BufferRef>> buffers,
                std::function<void(std::vector<int64_t>)> done);
  // Object size, or a negative ErrorCode.
  void GetSize(std::string key, std::function<void(int64_t)> done);
  // Per key: the replicas (leased like a get) or the error; an empty key is INVALID_KEY.
  void BatchGetReplicas(std::vector<std::string> keys,
                        std::function<void(std::vector<ObjectReplicas>)> done);
  void BatchRemove(std::vector<std::string> keys, bool force,
                   std::function<void(std::vector<int>)> done);
  // Number removed, or a negative ErrorCode.
  void RemoveByRegex(std::string regex, bool force, std::function<void(int64_t)> done);
  void RemoveAll(bool force, std::function<void(int64_t)> done);

 private:
  struct PutOp;
  struct GetOp;
  // CallMaster runs `rpc` on the master and hands its result (or the lost call's status) to done.
  // `rpc` may run after this core is gone (its request was already on the wire): it captures
  // values, never `this`. `done` runs only while the core lives (the channel's contract).
  template <typename R>
  void CallMaster(std::function<R(MasterClient&)> rpc, std::function<void(R)> done);
  // PerKeyCall sends the non-empty keys to `rpc` and answers one result per key: to_result of the
  // master's code, the call's failure code, or INVALID_KEY for an empty key.
  using KeyRpc = std::function<absl::StatusOr<std::vector<ErrorCode>>(
      MasterClient&, const std::vector<std::string>& keys)>;
  void PerKeyCall(std::vector<std::string> keys, KeyRpc rpc, int (*to_result)(ErrorCode),
                  std::function<void(std::vector<int>)> done);
  // One put-start / write / put-end round for the op's keys still to do.
  void PutRound(std::shared_ptr<PutOp> op);
  void PutWrite(std::shared_ptr<PutOp> op, std::vector<size_t> todo,
                std::vector<ObjectReplicas> started);
  void PutFinish(std::shared_ptr<PutOp> op, std::vector<size_t> written,
                 std::vector<size_t> failed);
  // Waits for keys another writer holds, then retries them.
  void PutAwaitOthers(std::shared_ptr<PutOp> op);
  void PutMaybeDone(std::shared_ptr<PutOp> op);
  // Reads every key of a get whose replica list is known.
  void GetRead(std::shared_ptr<GetOp> op);
  // Revoke gives up our puts of `keys` (by put id); `quarantine` keeps their space reserved.
  void Revoke(std::vector<std::string> keys, std::vector<uint64_t> put_ids, bool quarantine);
  // NextPutId is a fresh nonzero id, unique to this client in practice.
  uint64_t NextPutId();

  const StoreCoreOptions options_;
  std::atomic<uint64_t> segment_instance_;  // options_.segment.instance until a fence renews it
  std::atomic<bool> fenced_for_remount_{false};  // fenced, and the remount not yet confirmed
  std::atomic<bool> mounted_{false};
  std::atomic<uint64_t> mount_epoch_{0};
  std::atomic<uint64_t> put_counter_{0};
  std::unique_ptr<ReplicaCache> replica_cache_;  // null when disabled
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_STORE_CORE_H_
