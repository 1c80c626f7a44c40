// The command-line flags of mooncake_master (names and defaults from Mooncake's master,
// docs/compatibility.md section 5) and their translation into MasterServerOptions, with range
// checks whose errors name the flag and its value.
//
//   absl::SetProgramUsageMessage(...);
//   SetMasterFlagsUsageConfig();        // --help lists these flags
//   absl::ParseCommandLine(argc, argv);
//   auto options = MasterServerOptionsFromFlags();  // "--port=70000: ..." on a bad value
#ifndef MOONCAKE_MASTER_MASTER_FLAGS_H_
#define MOONCAKE_MASTER_MASTER_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "mooncake/master/master_server.h"

ABSL_DECLARE_FLAG(int32_t, port);
ABSL_DECLARE_FLAG(std::string, bind_address);
ABSL_DECLARE_FLAG(int32_t, rpc_thread_num);
ABSL_DECLARE_FLAG(uint64_t, default_kv_lease_ttl);
ABSL_DECLARE_FLAG(double, eviction_high_watermark_ratio);
ABSL_DECLARE_FLAG(double, eviction_ratio);
ABSL_DECLARE_FLAG(int64_t, client_ttl);
ABSL_DECLARE_FLAG(int64_t, put_start_discard_timeout_sec);
ABSL_DECLARE_FLAG(int64_t, put_start_release_timeout_sec);
ABSL_DECLARE_FLAG(int32_t, metrics_port);
ABSL_DECLARE_FLAG(int32_t, fast_rpc_port);
ABSL_DECLARE_FLAG(bool, enable_http_metadata_server);
ABSL_DECLARE_FLAG(int32_t, http_metadata_server_port);
ABSL_DECLARE_FLAG(std::string, http_metadata_server_host);
ABSL_DECLARE_FLAG(bool, enable_ha);
ABSL_DECLARE_FLAG(std::string, etcd_endpoints);
ABSL_DECLARE_FLAG(std::string, cluster_id);
ABSL_DECLARE_FLAG(int64_t, ha_lease_ttl);
ABSL_DECLARE_FLAG(int32_t, ha_replication_port);
ABSL_DECLARE_FLAG(int64_t, ha_ack_timeout_ms);
ABSL_DECLARE_FLAG(std::string, advertise_host);

namespace mooncake {

// MasterServerOptionsFromFlags reads the flags. Errors: a value out of range (INVALID_PARAMS,
// "--flag=value: why"), --enable_ha (NOT_SUPPORTED).
absl::StatusOr<MasterServerOptions> MasterServerOptionsFromFlags();

// SetMasterFlagsUsageConfig makes --help and --helpshort list the flags of mooncake/master/.
void SetMasterFlagsUsageConfig();

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_FLAGS_H_
