// SetupParams: the arguments of `MooncakeDistributedStore.setup()` after conversion from Python,
// and their translation into the StoreOptions that StoreClient::Create takes. Kept free of Python
// types so the rules (defaults, the two spellings of dict keys, which extras are ignored and which
// are refused) are unit-tested in C++.
//
//   SetupParams p;
//   p.master_server_address = "127.0.0.1:50051";
//   std::vector<std::string> notes;
//   absl::StatusOr<StoreOptions> options = MakeStoreOptions(p, &notes);  // notes: ignored extras
#ifndef SGLANG_BACKEND_SETUP_PARAMS_H_
#define SGLANG_BACKEND_SETUP_PARAMS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mooncake/common/client_config.h"
#include "mooncake/store/store_client.h"

namespace mooncake {
namespace binding {

struct SetupParams {
  // The seven positional arguments (SGLang 0.5.x order). Defaults are ClientConfig's.
  std::string local_hostname = ClientConfig().local_hostname;
  std::string metadata_server = ClientConfig().metadata_server;
  uint64_t global_segment_size = ClientConfig().global_segment_size;
  uint64_t local_buffer_size = ClientConfig().local_buffer_size;
  std::string protocol = ClientConfig().protocol;
  std::string rdma_devices;  // comma list, or a JSON map tp_rank -> devices (rank 0 is used)
  std::string master_server_address;

  // Keyword extras newer SGLang passes.
  bool enable_ssd_offload = false;
  std::string ssd_offload_path;
  std::string tenant_id;  // "" or "default" = the default tenant
  bool enable_client_http_server = false;
  int64_t client_http_port = 0;
};

// SetupKeyword names a keyword argument setup() accepts (besides `engine`).
enum class SetupKeyword {
  kEnableSsdOffload,
  kSsdOffloadPath,
  kTenantId,
  kEnableClientHttpServer,
  kClientHttpPort,
};

// FindSetupKeyword maps a keyword name to its SetupKeyword; false if setup() has no such keyword.
bool FindSetupKeyword(absl::string_view name, SetupKeyword* keyword);

// SetupDictField names a key of the `setup(config: dict)` form. Both Mooncake spellings are
// accepted for two of them ("rdma_devices"/"device_name", "master_server_addr"/
// "master_server_address"), and the keyword extras may appear in the dict too.
enum class SetupDictField {
  kLocalHostname,
  kMetadataServer,
  kGlobalSegmentSize,
  kLocalBufferSize,
  kProtocol,
  kRdmaDevices,
  kMasterServerAddress,
  kEnableSsdOffload,
  kSsdOffloadPath,
  kTenantId,
  kEnableClientHttpServer,
  kClientHttpPort,
};

// FindSetupDictField maps a dict key to its field; false for an unknown key.
bool FindSetupDictField(absl::string_view name, SetupDictField* field);

// MakeStoreOptions validates `params` (errors are INVALID_PARAMS and name the argument) and builds
// StoreOptions with a ClientConfig and, for RDMA, the devices. Extras that only add features we
// do not have (SSD offload, the client HTTP server) are dropped and described in `notes`, because
// the store still behaves correctly without them; a non-default tenant is refused with
// NOT_SUPPORTED, because ignoring it would mix tenants' objects.
absl::StatusOr<StoreOptions> MakeStoreOptions(const SetupParams& params,
                                              std::vector<std::string>* notes);

}  // namespace binding
}  // namespace mooncake

#endif  // SGLANG_BACKEND_SETUP_PARAMS_H_
