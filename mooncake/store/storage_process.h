// StartStorageProcess: the store client of a process that holds a segment for others
// (`mooncake_storage_node`, and `mooncake_client` of standalone mode, docs/standalone.md): its
// options from the program's flags and the MOONCAKE_ offload variables, then a client that waits
// for the master (CreateWhenMasterUp), so start order does not matter.
#ifndef MOONCAKE_STORE_STORAGE_PROCESS_H_
#define MOONCAKE_STORE_STORAGE_PROCESS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mooncake/store/store_client.h"

namespace mooncake {

struct StorageProcessConfig {
  std::string master_server_address;
  std::string metadata_server;
  std::string local_hostname;
  uint64_t segment_size = 0;
  std::string protocol;
  std::string devices;           // "erdma_0,erdma_1" (rank 0's share of a per-rank JSON map)
  std::string ssd_offload_path;  // empty: the SSD tier only if MOONCAKE_ENABLE_SSD_OFFLOAD says so
};

// A storage process's failure: `config` is true when the configuration itself is wrong (the
// program exits 2), false when the client could not start (exit 1).
struct StorageProcessError {
  absl::Status status;
  bool config = false;
};

// StartStorageProcess validates `config` and starts the client, retrying an unreachable master
// for `connect_timeout` or until `*stop`; messages are prefixed with `program`.
absl::StatusOr<std::unique_ptr<StoreClient>> StartStorageProcess(const StorageProcessConfig& config,
                                                                 absl::Duration connect_timeout,
                                                                 const volatile int* stop,
                                                                 absl::string_view program,
                                                                 StorageProcessError* error);

}  // namespace mooncake

#endif  // MOONCAKE_STORE_STORAGE_PROCESS_H_
