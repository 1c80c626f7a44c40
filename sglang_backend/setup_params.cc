// Translation of setup() arguments into StoreOptions (see setup_params.h).
#include "sglang_backend/setup_params.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace binding {
namespace {

struct NamedKeyword {
  const char* name;
  SetupKeyword keyword;
};

constexpr NamedKeyword kKeywords[] = {
    {"enable_ssd_offload", SetupKeyword::kEnableSsdOffload},
    {"ssd_offload_path", SetupKeyword::kSsdOffloadPath},
    {"tenant_id", SetupKeyword::kTenantId},
    {"enable_client_http_server", SetupKeyword::kEnableClientHttpServer},
    {"client_http_port", SetupKeyword::kClientHttpPort},
};

struct NamedField {
  const char* name;
  SetupDictField field;
};

constexpr NamedField kDictFields[] = {
    {"local_hostname", SetupDictField::kLocalHostname},
    {"metadata_server", SetupDictField::kMetadataServer},
    {"global_segment_size", SetupDictField::kGlobalSegmentSize},
    {"local_buffer_size", SetupDictField::kLocalBufferSize},
    {"protocol", SetupDictField::kProtocol},
    {"rdma_devices", SetupDictField::kRdmaDevices},
    {"device_name", SetupDictField::kRdmaDevices},
    {"master_server_addr", SetupDictField::kMasterServerAddress},
    {"master_server_address", SetupDictField::kMasterServerAddress},
    {"enable_ssd_offload", SetupDictField::kEnableSsdOffload},
    {"ssd_offload_path", SetupDictField::kSsdOffloadPath},
    {"tenant_id", SetupDictField::kTenantId},
    {"enable_client_http_server", SetupDictField::kEnableClientHttpServer},
    {"client_http_port", SetupDictField::kClientHttpPort},
};

absl::Status Invalid(absl::string_view what) {
  return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("setup(): ", what));
}

}  // namespace

bool FindSetupKeyword(absl::string_view name, SetupKeyword* keyword) {
  for (const NamedKeyword& k : kKeywords) {
    if (name == k.name) {
      *keyword = k.keyword;
      return true;
    }
  }
  return false;
}

bool FindSetupDictField(absl::string_view name, SetupDictField* field) {
  for (const NamedField& f : kDictFields) {
    if (name == f.name) {
      *field = f.field;
      return true;
    }
  }
  return false;
}

absl::StatusOr<StoreOptions> MakeStoreOptions(const SetupParams& params,
                                              std::vector<std::string>* notes) {
  const std::string tenant(absl::StripAsciiWhitespace(params.tenant_id));
  if (!tenant.empty() && tenant != "default") {
    return MakeError(ErrorCode::NOT_SUPPORTED,
                     absl::StrCat("setup(): tenant_id=\"", tenant,
                                  "\": tenants are not supported; only the default tenant is"));
  }
  if (params.enable_client_http_server || params.client_http_port != 0) {
    notes->push_back(
        "the client HTTP server (enable_client_http_server / client_http_port) is not supported; "
        "ignored");
  }
  if (params.client_http_port < 0 || params.client_http_port > 65535) {
    return Invalid(
        absl::StrCat("client_http_port=", params.client_http_port, ": expected 0..65535"));
  }

  StoreOptions options;
  ClientConfig& config = options.config;
  config.local_hostname = std::string(absl::StripAsciiWhitespace(params.local_hostname));
  config.metadata_server = std::string(absl::StripAsciiWhitespace(params.metadata_server));
  config.global_segment_size = params.global_segment_size;
  config.local_buffer_size = params.local_buffer_size;
  config.protocol = absl::AsciiStrToLower(absl::StripAsciiWhitespace(params.protocol));
  config.device_name = std::string(absl::StripAsciiWhitespace(params.rdma_devices));
  config.master_server_address =
      std::string(absl::StripAsciiWhitespace(params.master_server_address));
  // The SSD tier: the keywords SGLang passes, tunables from MOONCAKE_OFFLOAD_* (docs/ssd_tier.md).
  config.enable_ssd_offload = params.enable_ssd_offload;
  config.ssd_offload_path = std::string(absl::StripAsciiWhitespace(params.ssd_offload_path));
  if (config.enable_ssd_offload) {
    if (absl::Status s = ApplyOffloadEnv(ProcessEnv, &config); !s.ok()) return Invalid(s.message());
  } else if (!config.ssd_offload_path.empty()) {
    notes->push_back("ssd_offload_path is set but enable_ssd_offload is not: no SSD tier");
  }
  if (absl::Status s = config.Validate(); !s.ok()) return Invalid(s.message());

  if (config.protocol == "rdma" && !config.device_name.empty()) {
    absl::StatusOr<std::vector<std::string>> devices = DevicesForRank(config.device_name, 0);
    if (!devices.ok()) {
      return Invalid(
          absl::StrCat("rdma_devices=\"", config.device_name, "\": ", devices.status().message()));
    }
    options.engine_options.rdma_devices = *std::move(devices);
  }
  return options;
}

}  // namespace binding
}  // namespace mooncake
