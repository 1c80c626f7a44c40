// StandaloneClient: a StoreApi whose calls the storage process on this host does
// (`mooncake_client`, StandaloneServer; protocol in standalone_protocol.h). What `setup_dummy`
// builds: this process mounts no segment and talks to no master; objects belong to the storage
// process, so they outlive this process.
//
//   auto client = StandaloneClient::Connect({.address = "127.0.0.1:50052"});
//   client->BatchPut(keys, buffers, ReplicateConfig());   // buffers from HostMemAllocator: no copy
//
// Buffers inside a HostMemAllocator block are handed to the storage process once per connection
// (its memfd) and then read and written in place. Any other buffer is copied through a staging
// block of `staging_bytes` per connection (a larger object gets a temporary block of its own).
//
// Faults: a call that cannot reach the storage process (not running, killed, restarted) fails
// with RPC_FAIL, one that gets no reply within `call_timeout` with RPC_TIMEOUT; the connection is
// dropped and the next call connects again, so a restarted storage process is picked up with no
// action. Thread-safe: calls from several threads use separate connections (up to
// `max_connections`, then they wait).
#ifndef MOONCAKE_STANDALONE_STANDALONE_CLIENT_H_
#define MOONCAKE_STANDALONE_STANDALONE_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/standalone/host_mem_allocator.h"
#include "mooncake/standalone/standalone_protocol.h"
#include "mooncake/store/store_api.h"

namespace mooncake {

struct StandaloneClientOptions {
  // "host:port" of the storage process (`mooncake_client --port`), or a port.
  std::string address;
  uint64_t staging_bytes = 16ull << 20;
  absl::Duration call_timeout = absl::Seconds(60);
  int max_connections = 16;
};

class StandaloneClient : public StoreApi {
 public:
  // Connect opens the first connection (so a missing storage process is reported here).
  static absl::StatusOr<std::unique_ptr<StandaloneClient>> Connect(StandaloneClientOptions options);
  ~StandaloneClient() override;

  absl::Status Close() override;
  std::string hostname() const override;

  // Nothing to do remotely: allocator blocks are shared on first use, other memory is staged.
  bool requires_registration() const override { return false; }
  absl::Status RegisterBuffer(void* ptr, uint64_t size) override;
  absl::Status UnregisterBuffer(void* ptr) override;

  std::vector<int> BatchIsExist(const std::vector<std::string>& keys) override;
  std::vector<int> BatchPut(const std::vector<std::string>& keys,
                            const std::vector<std::vector<BufferRef>>& buffers,
                            const ReplicateConfig& config) override;
  std::vector<int64_t> BatchGet(const std::vector<std::string>& keys,
                                const std::vector<std::vector<BufferRef>>& buffers) override;
  int PutBytes(const std::string& key, absl::string_view value,
               const ReplicateConfig& config) override;
  absl::StatusOr<std::string> GetBytes(const std::string& key) override;
  int64_t GetSize(const std::string& key) override;
  std::vector<int> BatchRemove(const std::vector<std::string>& keys, bool force) override;
  int64_t RemoveByRegex(const std::string& regex, bool force) override;
  int64_t RemoveAll(bool force) override;
  std::vector<ObjectReplicas> BatchGetReplicas(const std::vector<std::string>& keys) override;
  // kMasterUnreachable also when the storage process cannot be reached.
  StoreHealth HealthCheck() override;

 private:
  struct Conn;
  class Lease;
  explicit StandaloneClient(StandaloneClientOptions options, std::string socket_name);

  absl::StatusOr<std::unique_ptr<Conn>> Open();
  // Call sends one request and returns the reply after its status word (which, when negative,
  // becomes the error). Any transport failure closes `conn`.
  absl::StatusOr<std::string> Call(Conn& conn, StandaloneOp op, absl::string_view payload,
                                   int pass_fd = -1);
  // RegionFor maps the block holding [ptr, ptr+size) on `conn` (once) and returns its region id.
  absl::StatusOr<uint64_t> RegionFor(Conn& conn, const HostBlock& block);
  absl::Status ForgetFreedBlocks(Conn& conn);
  absl::StatusOr<char*> Staging(Conn& conn, uint64_t* region);
  // Moves one batch (put or get), staging what is not shared memory.
  std::vector<int64_t> Transfer(bool put, const std::vector<std::string>& keys,
                                const std::vector<std::vector<BufferRef>>& buffers,
                                const ReplicateConfig& config);
  absl::StatusOr<std::vector<int64_t>> CallCodes(StandaloneOp op, const std::string& payload);

  const StandaloneClientOptions options_;
  const std::string socket_name_;
  HostMemAllocator staging_allocator_;  // staging and oversized temporary blocks
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Conn>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::string hostname_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake

#endif  // MOONCAKE_STANDALONE_STANDALONE_CLIENT_H_
