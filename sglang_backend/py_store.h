// PyStore: `mooncake.store.MooncakeDistributedStore`, the object SGLang's HiCache Mooncake backend
// drives (docs/compatibility.md sections 2 and 3), over mooncake::StoreClient. Also
// PyReplicateConfig
// (`mooncake.store.ReplicateConfig`) and the binding of `MooncakeHostMemAllocator`.
//
// The Python contract: every method returns Mooncake's codes (0 / bytes / 1-0 / negative
// ErrorCode) and never raises for a per-key failure; only argument *types* raise (TypeError, as
// pybind11 does). Lists of different lengths give a list of INVALID_PARAMS (-600). Every call
// converts its arguments with the GIL held, then releases the GIL while it waits. Before setup()
// succeeds (and after close()) calls return INTERNAL_ERROR (-1), as Mooncake does.
#ifndef SGLANG_BACKEND_PY_STORE_H_
#define SGLANG_BACKEND_PY_STORE_H_

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "mooncake/master/master_types.h"
#include "mooncake/store/store_api.h"
#include "mooncake/store/store_client.h"
#include "pybind11/pybind11.h"
#include "sglang_backend/setup_params.h"

namespace mooncake {
namespace binding {

class HostBuffer;
struct BufferSlice;

// PyReplicateConfig mirrors Mooncake's Python ReplicateConfig. `group_ids` and
// `prefer_alloc_in_same_node` are accepted and kept but do not change placement yet.
struct PyReplicateConfig {
  int replica_num = 1;
  bool with_soft_pin = false;
  bool with_hard_pin = false;
  std::string preferred_segment;
  std::vector<std::string> preferred_segments;
  std::vector<std::string> group_ids;
  bool prefer_alloc_in_same_node = false;

  // ToReplicateConfig merges preferred_segment in front of preferred_segments.
  ReplicateConfig ToReplicateConfig() const;
};

// A caller buffer as Python passes it: integers, validated per key.
struct PyBuffer {
  int64_t ptr = 0;
  int64_t size = 0;
};

class PyStore {
 public:
  PyStore();
  ~PyStore();
  PyStore(const PyStore&) = delete;
  PyStore& operator=(const PyStore&) = delete;

  // Setup connects to the master and mounts the segment. `engine` (optional) is shared instead
  // of creating one. 0 or a negative code (the reason is logged).
  int Setup(const SetupParams& params, std::shared_ptr<TransferEngine> engine);
  // SetupDummy connects to the storage process on this host (`mooncake_client`) at
  // `server_address` ("host:port"): standalone mode, docs/standalone.md. `local_buffer_size`
  // sizes the staging block for memory that is not from MooncakeHostMemAllocator;
  // `mem_pool_size` is accepted as Mooncake's and only logged.
  int SetupDummy(uint64_t mem_pool_size, uint64_t local_buffer_size,
                 const std::string& server_address);
  int Close();

  int RegisterBuffer(int64_t ptr, int64_t size);
  int UnregisterBuffer(int64_t ptr);

  int Put(const std::string& key, absl::string_view value, const ReplicateConfig& config);
  // The value and 0, or "" and a negative code.
  std::string Get(const std::string& key, int* code);
  int IsExist(const std::string& key);
  std::vector<int> BatchIsExist(const std::vector<std::string>& keys);
  int64_t GetSize(const std::string& key);

  // Zero-copy batches: each key's object is the concatenation of its buffers.
  std::vector<int> BatchPutFrom(const std::vector<std::string>& keys,
                                const std::vector<std::vector<PyBuffer>>& buffers,
                                const ReplicateConfig& config);
  std::vector<int64_t> BatchGetInto(const std::vector<std::string>& keys,
                                    const std::vector<std::vector<PyBuffer>>& buffers);

  int Remove(const std::string& key, bool force);
  std::vector<int> BatchRemove(const std::vector<std::string>& keys, bool force);
  int64_t RemoveByRegex(const std::string& regex, bool force);
  int64_t RemoveAll(bool force);
  std::string Hostname();

  // Values copied in and out of memory this binding owns (py_store_values.cc): `values[i]` is
  // key i's object as parts to concatenate. Per key 0 or a negative code.
  std::vector<int> PutValues(const std::vector<std::string>& keys,
                             const std::vector<std::vector<absl::string_view>>& values,
                             const ReplicateConfig& config, bool upsert);
  // Per key the object, as a slice of one buffer the batch shares, or a slice with no buffer
  // (missing or failed; `code` says why).
  std::vector<BufferSlice> GetValues(const std::vector<std::string>& keys);
  // Upsert: insert, or replace the object a key has. Not atomic: the old object is removed
  // (waiting up to kUpsertLeaseWait for readers' leases to end), then the new one put, so a
  // reader in between sees OBJECT_NOT_FOUND, never a mix of old and new bytes.
  std::vector<int> BatchUpsertFrom(const std::vector<std::string>& keys,
                                   const std::vector<std::vector<PyBuffer>>& buffers,
                                   const ReplicateConfig& config);
  std::vector<ObjectReplicas> BatchGetReplicas(const std::vector<std::string>& keys);
  // Mooncake's health_check: 0 healthy, 1 not set up, 2 master (or storage process) unreachable.
  int HealthCheck();

 private:
  // Client returns the client (nullptr before setup) with mu_ held shared by `lock`.
  StoreApi* Client(std::shared_lock<std::shared_mutex>* lock, absl::string_view method);
  // ClearForUpsert removes the keys' current objects; per key 0 (now absent) or a code.
  std::vector<int> ClearForUpsert(StoreApi* c, const std::vector<std::string>& keys);
  // Upsert clears the keys, then puts those it could clear; per key 0 or a code.
  std::vector<int> Upsert(StoreApi* c, const std::vector<std::string>& keys,
                          const std::vector<std::vector<BufferRef>>& buffers,
                          const ReplicateConfig& config);
  // Install makes `client` this store's, unless one is already set up.
  int Install(std::unique_ptr<StoreApi> client, std::shared_ptr<TransferEngine> engine);

  std::shared_mutex mu_;              // shared by calls, exclusive for setup and close
  std::unique_ptr<StoreApi> client_;  // a StoreClient (setup) or a StandaloneClient (setup_dummy)
  std::shared_ptr<TransferEngine> engine_;  // a shared engine; outlives client_
};

// HostBuffer is memory this binding allocated for values: what `mooncake.store.BufferHandle`
// exposes. Large ones come from a HostMemAllocator, so standalone mode moves them in place.
class HostBuffer {
 public:
  // Allocates `size` bytes (at least one page); ok() is false if the kernel refused.
  explicit HostBuffer(uint64_t size);
  ~HostBuffer();
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  bool ok() const { return base_ != nullptr; }
  char* data() const { return base_; }
  uint64_t capacity() const { return capacity_; }

 private:
  char* base_ = nullptr;
  uint64_t capacity_ = 0;
  bool shared_ = false;  // from HostMemAllocator (large values), else the heap
};

// BufferSlice is `size` bytes at `offset` in `buffer` (null when there is no value: `code`).
struct BufferSlice {
  std::shared_ptr<HostBuffer> buffer;
  uint64_t offset = 0;
  uint64_t size = 0;
  int64_t code = 0;
  const char* data() const { return buffer->data() + offset; }
};

// CloseAllStores closes every live store (registered with Python's atexit, so segments are
// unmounted when the interpreter exits with stores still open).
void CloseAllStores();

// BindStore adds MooncakeDistributedStore, ReplicateConfig and MooncakeHostMemAllocator to `m`.
void BindStore(pybind11::module_& m);
// BindStoreValues adds BufferHandle, the replica descriptor classes and the value, upsert,
// replica and health methods (py_store_values.cc) to MooncakeDistributedStore.
void BindStoreValues(pybind11::module_& m, pybind11::class_<PyStore>& store);

}  // namespace binding
}  // namespace mooncake

#endif  // SGLANG_BACKEND_PY_STORE_H_
