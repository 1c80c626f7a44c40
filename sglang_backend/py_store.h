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
#include "mooncake/store/store_client.h"
#include "pybind11/pybind11.h"
#include "sglang_backend/setup_params.h"

namespace mooncake {
namespace binding {

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

 private:
  // Client returns the client (nullptr before setup) with mu_ held shared by `lock`.
  StoreClient* Client(std::shared_lock<std::shared_mutex>* lock, absl::string_view method);

  std::shared_mutex mu_;  // shared by calls, exclusive for setup and close
  std::unique_ptr<StoreClient> client_;
  std::shared_ptr<TransferEngine> engine_;  // a shared engine; outlives client_
};

// CloseAllStores closes every live store (registered with Python's atexit, so segments are
// unmounted when the interpreter exits with stores still open).
void CloseAllStores();

// BindStore adds MooncakeDistributedStore, ReplicateConfig and MooncakeHostMemAllocator to `m`.
void BindStore(pybind11::module_& m);

}  // namespace binding
}  // namespace mooncake

#endif  // SGLANG_BACKEND_PY_STORE_H_
