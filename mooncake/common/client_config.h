// ClientConfig: the typed configuration of a store client, loaded from the MOONCAKE_* environment
// variables or from a JSON file, and validated. Field names and defaults follow SGLang's
// MooncakeStoreConfig (docs/compatibility.md section 3).
//
//   absl::StatusOr<ClientConfig> config = LoadClientConfigFromEnv();
//   if (!config.ok()) return config.status();  // e.g. "MOONCAKE_PROTOCOL: unknown protocol ..."
#ifndef MOONCAKE_COMMON_CLIENT_CONFIG_H_
#define MOONCAKE_COMMON_CLIENT_CONFIG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mooncake {

struct ClientConfig {
  // Name (or host:port) this client's transfer engine advertises. MOONCAKE_LOCAL_HOSTNAME.
  std::string local_hostname = "localhost";
  // "P2PHANDSHAKE", "http://host:port/metadata", "etcd://host:port[,host:port]" (or bare host:port,
  // which means etcd). MOONCAKE_TE_META_DATA_SERVER.
  std::string metadata_server = "P2PHANDSHAKE";
  // Bytes this client contributes to the pool; 0 makes a pure client. MOONCAKE_GLOBAL_SEGMENT_SIZE.
  uint64_t global_segment_size = 4ull << 30;
  // Bytes of the client's own staging buffer. MOONCAKE_LOCAL_BUFFER_SIZE.
  uint64_t local_buffer_size = 16ull << 20;
  // "tcp" or "rdma". MOONCAKE_PROTOCOL.
  std::string protocol = "tcp";
  // RDMA devices: "erdma_0,erdma_1", or a JSON map from TP rank to devices. MOONCAKE_DEVICE.
  std::string device_name;
  // host:port of mooncake_master. MOONCAKE_MASTER. Required.
  std::string master_server_address;

  // The SSD tier below this client's segment (docs/ssd_tier.md). MOONCAKE_ENABLE_SSD_OFFLOAD,
  // setup(enable_ssd_offload=True). Needs global_segment_size > 0 and a master run with
  // --enable_offload.
  bool enable_ssd_offload = false;
  // Directory of the bucket files (absolute). MOONCAKE_OFFLOAD_FILE_STORAGE_PATH,
  // setup(ssd_offload_path=).
  std::string ssd_offload_path;
  // Bytes the tier may take; 0: as much as the file system holds.
  // MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES.
  uint64_t offload_total_size_limit = 0;
  // Bytes per bucket file. MOONCAKE_OFFLOAD_BUCKET_SIZE_LIMIT_BYTES.
  uint64_t offload_bucket_size_limit = 64ull << 20;
  // Disk eviction starts above high and frees down to low (fractions of the limit).
  // MOONCAKE_OFFLOAD_DISK_EVICTION_HIGH_WATERMARK_RATIO / ..._LOW_WATERMARK_RATIO.
  double offload_high_watermark = 0.9;
  double offload_low_watermark = 0.8;

  // Validate checks every field; the error names the first bad field and quotes its value.
  absl::Status Validate() const;
};

// EnvLookup returns the value of an environment variable, or nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;

// ProcessEnv reads the real environment.
std::optional<std::string> ProcessEnv(const char* name);

// LoadClientConfigFromEnv reads MOONCAKE_* variables over the defaults and validates the result.
absl::StatusOr<ClientConfig> LoadClientConfigFromEnv(const EnvLookup& env = ProcessEnv);

// ApplyOffloadEnv reads MOONCAKE_ENABLE_SSD_OFFLOAD (which can only turn the tier on), the
// MOONCAKE_OFFLOAD_* tunables and the path (if the config has none) into `config`; errors name
// the variable. LoadClientConfigFromEnv, setup() and mooncake_storage_node call it.
absl::Status ApplyOffloadEnv(const EnvLookup& env, ClientConfig* config);

// LoadClientConfigFromJson parses a JSON object with ClientConfig's field names (sizes may be
// numbers or strings such as "4gb"). Unknown fields are errors, so typos do not pass silently.
absl::StatusOr<ClientConfig> LoadClientConfigFromJson(absl::string_view json_text);

// LoadClientConfigFromFile reads and parses a JSON file; errors name the file.
absl::StatusOr<ClientConfig> LoadClientConfigFromFile(const std::string& path);

// DevicesForRank resolves a device_name value for one TP rank: a comma list applies to every rank;
// a JSON map {"0": "erdma_0", "1": ["erdma_1", "erdma_2"]} picks the rank's entry.
absl::StatusOr<std::vector<std::string>> DevicesForRank(absl::string_view device_name, int rank);

}  // namespace mooncake

#endif  // MOONCAKE_COMMON_CLIENT_CONFIG_H_
