// StoreApi: what a store client offers the Python binding, whichever way it reaches the pool.
// Two implementations:
//   StoreClient        (store_client.h)  embedded: this process mounts its own segment and moves
//                                        bytes itself;
//   StandaloneClient   (mooncake/standalone/standalone_client.h)  standalone: a storage process on
//                                        this host (`mooncake_client`) holds the segment and does
//                                        every call; this process only hands it buffers.
// Results follow the Python contract (docs/compatibility.md section 2): per key 0 / bytes / 1-0 on
// success, a negative ErrorCode on failure; a batch never fails as a whole because one key did.
#ifndef MOONCAKE_STORE_STORE_API_H_
#define MOONCAKE_STORE_STORE_API_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mooncake/master/master_types.h"
#include "mooncake/store/store_core.h"

namespace mooncake {

// What health_check() reports (Mooncake's values).
enum class StoreHealth : int {
  kHealthy = 0,
  kNotSetUp = 1,
  kMasterUnreachable = 2,
};

class StoreApi {
 public:
  virtual ~StoreApi() = default;

  // Close waits for calls in flight, then releases everything; later calls fail. Idempotent.
  virtual absl::Status Close() = 0;
  // The name this client's data lives under ("host:port" of the process holding the segment).
  virtual std::string hostname() const = 0;

  // Whether BatchPut/BatchGet buffers must be registered first (embedded: the engine moves them;
  // standalone: any memory works, allocator blocks without a copy).
  virtual bool requires_registration() const = 0;
  virtual absl::Status RegisterBuffer(void* ptr, uint64_t size) = 0;
  virtual absl::Status UnregisterBuffer(void* ptr) = 0;

  // Per key: 1 exists, 0 missing, negative ErrorCode.
  virtual std::vector<int> BatchIsExist(const std::vector<std::string>& keys) = 0;
  // Per key: 0 stored (or already present), negative ErrorCode (NO_AVAILABLE_HANDLE: no space).
  // The object is the concatenation of the key's buffers.
  virtual std::vector<int> BatchPut(const std::vector<std::string>& keys,
                                    const std::vector<std::vector<BufferRef>>& buffers,
                                    const ReplicateConfig& config) = 0;
  // Per key: bytes read, or a negative ErrorCode; the object is scattered across the buffers.
  virtual std::vector<int64_t> BatchGet(const std::vector<std::string>& keys,
                                        const std::vector<std::vector<BufferRef>>& buffers) = 0;
  // Copying forms for Python bytes.
  virtual int PutBytes(const std::string& key, absl::string_view value,
                       const ReplicateConfig& config) = 0;
  virtual absl::StatusOr<std::string> GetBytes(const std::string& key) = 0;

  virtual int64_t GetSize(const std::string& key) = 0;
  virtual std::vector<int> BatchRemove(const std::vector<std::string>& keys, bool force) = 0;
  virtual int64_t RemoveByRegex(const std::string& regex, bool force) = 0;
  virtual int64_t RemoveAll(bool force) = 0;
  // Per key: the object's replicas (error OK) or why there are none. Asking leases the object,
  // as a get would, so the descriptors stay valid for the lease.
  virtual std::vector<ObjectReplicas> BatchGetReplicas(const std::vector<std::string>& keys) = 0;
  // kHealthy when the master answers now; kMasterUnreachable when it (or, standalone, the
  // storage process) does not.
  virtual StoreHealth HealthCheck() = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_STORE_API_H_
