// StartStorageProcess (see storage_process.h).
#include "mooncake/store/storage_process.h"

#include <utility>

#include "mooncake/common/client_config.h"
#include "mooncake/common/error_code.h"

namespace mooncake {

absl::StatusOr<std::unique_ptr<StoreClient>> StartStorageProcess(const StorageProcessConfig& config,
                                                                 absl::Duration connect_timeout,
                                                                 const volatile int* stop,
                                                                 absl::string_view program,
                                                                 StorageProcessError* error) {
  if (config.segment_size == 0) {
    error->config = true;
    error->status = MakeError(ErrorCode::INVALID_PARAMS, "the segment size must be positive");
    return error->status;
  }
  absl::Status config_error;
  // StoreOptions is move-only (it may carry injected seams): one fresh set per attempt.
  auto options = [&] {
    StoreOptions o;
    o.config.master_server_address = config.master_server_address;
    o.config.metadata_server = config.metadata_server;
    o.config.local_hostname = config.local_hostname;
    o.config.global_segment_size = config.segment_size;
    o.config.protocol = config.protocol;
    o.config.device_name = config.devices;
    if (auto devices = DevicesForRank(o.config.device_name, 0); devices.ok()) {
      o.engine_options.rdma_devices = *devices;
    }
    o.config.ssd_offload_path = config.ssd_offload_path;
    o.config.enable_ssd_offload = !o.config.ssd_offload_path.empty();
    absl::Status s = ApplyOffloadEnv(ProcessEnv, &o.config);
    if (s.ok() && o.config.enable_ssd_offload) s = o.config.Validate();
    if (!s.ok()) config_error = s;
    return o;
  };
  StoreOptions first = options();
  if (!config_error.ok()) {
    error->config = true;
    error->status = config_error;
    return config_error;
  }
  bool first_used = false;
  auto store = StoreClient::CreateWhenMasterUp(
      [&] {
        if (first_used) return options();
        first_used = true;
        return std::move(first);
      },
      connect_timeout, stop, program);
  if (!store.ok()) error->status = store.status();
  return store;
}

}  // namespace mooncake
