// StoreClient: the client of the distributed KV store, what
// `mooncake.store.MooncakeDistributedStore` wraps. It contributes a segment of its own memory to
// the pool (global_segment_size, 0 = pure client), and puts and gets objects zero-copy between
// caller buffers and replicas anywhere in the pool, through the TransferEngine. The master (through
// the MasterClient seam) decides where objects live; data never flows through it.
//
//   auto store = StoreClient::Create(config);               // mounts the segment, heartbeats
//   store->RegisterBuffer(pool, pool_bytes);                 // once, the whole host pool
//   auto put = store->BatchPut(keys, {{{ptr, size}}, ...}, ReplicateConfig());
//   auto got = store->BatchGet(keys, {{{ptr, size}}, ...});  // bytes read, or a negative code
//
// Results follow the Python contract (docs/compatibility.md section 2): per key 0 or bytes read on
// success, a negative ErrorCode on failure; a batch never throws and never fails as a whole because
// one key did. The logic is StoreCore's (store_core.h), run here with inline seams: the gRPC
// MasterClient, the TransferEngine and the real clock. Thread-safe; SGLang calls it from three
// threads at once.
#ifndef MOONCAKE_STORE_STORE_CLIENT_H_
#define MOONCAKE_STORE_STORE_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mooncake/common/client_config.h"
#include "mooncake/common/executor.h"
#include "mooncake/master/master_client.h"
#include "mooncake/master/master_types.h"
#include "mooncake/store/disk_tier.h"
#include "mooncake/store/engine_data_path.h"
#include "mooncake/store/master_channel.h"
#include "mooncake/store/store_api.h"
#include "mooncake/store/store_core.h"
#include "mooncake/transfer/transfer_engine.h"

namespace mooncake {

struct StoreOptions {
  ClientConfig config;
  absl::Duration rpc_timeout = absl::Seconds(5);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // Allocate the whole segment at setup (MC_PREFAULT_SEGMENT=0 turns it off): writes into the pool
  // then never pay first-touch page faults.
  bool prefault_segment = true;
  // Optional: use this engine (not owned) instead of creating one (SGLang's reuse of a
  // mooncake.engine.TransferEngine).
  TransferEngine* engine = nullptr;
  // Optional: the master seam; default a GrpcMasterClient to config.master_server_address.
  std::unique_ptr<MasterClient> master;
  // Advanced engine settings (routes, lanes) when the store creates its own engine.
  TransferEngineOptions engine_options;
};

class StoreClient : public StoreApi {
 public:
  static absl::StatusOr<std::unique_ptr<StoreClient>> Create(StoreOptions options);
  // CreateWhenMasterUp retries Create while the master cannot be reached (start order of master
  // and storage processes does not matter), every 500 ms until `timeout` passes or `*stop` turns
  // true; any other error returns at once. `options` makes a fresh set per attempt (StoreOptions
  // is move-only). Each retry is reported on stderr, prefixed with `who`.
  static absl::StatusOr<std::unique_ptr<StoreClient>> CreateWhenMasterUp(
      const std::function<StoreOptions()>& options, absl::Duration timeout,
      const volatile int* stop, absl::string_view who);
  ~StoreClient() override;
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  // Close waits for the calls in flight on other threads, then unmounts the segment, stops
  // heartbeats and releases the engine; calls made after it fail with INVALID_PARAMS ("store is
  // closed"). Idempotent.
  absl::Status Close() override;

  // The segment name of this client's transfer engine ("host:port"); stays valid after Close.
  std::string hostname() const override { return hostname_; }
  // engine is null after Close.
  TransferEngine* engine() { return engine_; }

  absl::Status RegisterBuffer(void* ptr, uint64_t size) override;
  absl::Status UnregisterBuffer(void* ptr) override;

  // Per key: 1 exists, 0 missing, negative ErrorCode on error.
  std::vector<int> BatchIsExist(const std::vector<std::string>& keys) override;
  // Per key: 0 stored (or already present), negative ErrorCode. The object is the concatenation of
  // the key's buffers, which must be registered.
  std::vector<int> BatchPut(const std::vector<std::string>& keys,
                            const std::vector<std::vector<BufferRef>>& buffers,
                            const ReplicateConfig& config) override;
  // Per key: bytes read (the object size), or a negative ErrorCode. The buffers must be registered
  // and hold at least the object; it is scattered across them in order.
  std::vector<int64_t> BatchGet(const std::vector<std::string>& keys,
                                const std::vector<std::vector<BufferRef>>& buffers) override;

  // Asynchronous forms: `done` runs on an internal thread with the same results.
  void BatchPutAsync(std::vector<std::string> keys, std::vector<std::vector<BufferRef>> buffers,
                     ReplicateConfig config, std::function<void(std::vector<int>)> done);
  void BatchGetAsync(std::vector<std::string> keys, std::vector<std::vector<BufferRef>> buffers,
                     std::function<void(std::vector<int64_t>)> done);

  // Copying forms for Python bytes (not zero-copy).
  int PutBytes(const std::string& key, absl::string_view value,
               const ReplicateConfig& config) override;
  // The value, "" with OBJECT_NOT_FOUND when missing.
  absl::StatusOr<std::string> GetBytes(const std::string& key) override;

  // Object size, or a negative ErrorCode.
  int64_t GetSize(const std::string& key) override;
  int Remove(const std::string& key, bool force);
  std::vector<int> BatchRemove(const std::vector<std::string>& keys, bool force) override;
  // Number removed, or a negative ErrorCode.
  int64_t RemoveByRegex(const std::string& regex, bool force) override;
  int64_t RemoveAll(bool force) override;
  std::vector<ObjectReplicas> BatchGetReplicas(const std::vector<std::string>& keys) override;
  // One heartbeat to the master, now.
  StoreHealth HealthCheck() override;
  bool requires_registration() const override { return true; }

  const ClientId& client_id() const { return client_id_; }
  // The SSD tier, or null without enable_ssd_offload.
  DiskTier* disk_tier() { return disk_tier_.get(); }
  // True once the segment is mounted (and remounted after the master forgot it).
  bool mounted() const { return core_ != nullptr && core_->mounted(); }

 private:
  explicit StoreClient(StoreOptions options);
  absl::Status Setup();
  void HeartbeatLoop();
  // Call is held by every public call while it runs; Close waits until none is. A call made
  // after Close started fails with the returned status.
  class Call {
   public:
    explicit Call(StoreClient* client);
    ~Call();
    const absl::Status& status() const { return status_; }

   private:
    StoreClient* const client_;
    absl::Status status_;
  };

  StoreOptions options_;
  std::unique_ptr<TransferEngine> owned_engine_;
  TransferEngine* engine_ = nullptr;
  std::unique_ptr<MasterClient> master_;
  std::unique_ptr<DirectMasterChannel> channel_;
  std::unique_ptr<EngineDataPath> data_;
  std::unique_ptr<StoreCore> core_;
  std::unique_ptr<DiskTier> disk_tier_;  // with enable_ssd_offload
  ClientId client_id_;
  SegmentDesc segment_;  // size 0 for a pure client
  void* segment_memory_ = nullptr;
  std::string hostname_;
  absl::Mutex calls_mu_;
  bool closed_ ABSL_GUARDED_BY(calls_mu_) = false;
  int calls_ ABSL_GUARDED_BY(calls_mu_) = 0;
  absl::Notification stop_;
  std::thread heartbeat_;
  std::unique_ptr<Executor> workers_;
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_STORE_CLIENT_H_
