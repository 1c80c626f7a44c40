#include "mooncake/common/client_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/net/host_port.h"
#include "nlohmann/json.hpp"

namespace mooncake {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid config field ", field, " = \"", value, "\": ", why));
}

// A host:port whose port is 1..65535 and whose host is not empty.
bool IsHostPort(absl::string_view s) { return ParseHostPort(s).ok(); }

absl::Status ValidateMetadataServer(absl::string_view v) {
  constexpr absl::string_view kField = "metadata_server (MOONCAKE_TE_META_DATA_SERVER)";
  if (v == "P2PHANDSHAKE") return absl::OkStatus();
  if (absl::StartsWith(v, "http://")) {
    absl::string_view rest = v.substr(7);
    absl::string_view hostport = rest.substr(0, rest.find('/'));
    if (!IsHostPort(hostport)) return FieldError(kField, v, "expected http://host:port/metadata");
    return absl::OkStatus();
  }
  absl::string_view endpoints = v;
  if (absl::StartsWith(v, "etcd://")) endpoints = v.substr(7);
  for (absl::string_view ep : absl::StrSplit(endpoints, absl::ByAnyChar(",;"))) {
    if (!IsHostPort(ep)) {
      return FieldError(kField, v,
                        "expected P2PHANDSHAKE, http://host:port/metadata or etcd://host:port");
    }
  }
  return absl::OkStatus();
}

absl::Status ApplySize(const Json& value, absl::string_view field, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
    return absl::OkStatus();
  }
  if (value.is_number_integer()) return FieldError(field, value.dump(), "must not be negative");
  if (value.is_string()) {
    absl::StatusOr<uint64_t> v = ParseByteSize(value.get<std::string>());
    if (!v.ok()) return FieldError(field, value.get<std::string>(), v.status().message());
    *out = *v;
    return absl::OkStatus();
  }
  return FieldError(field, value.dump(), "expected a byte count or a string such as \"4gb\"");
}

absl::Status ApplyString(const Json& value, absl::string_view field, std::string* out) {
  if (!value.is_string()) return FieldError(field, value.dump(), "expected a string");
  *out = value.get<std::string>();
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateOffload(const ClientConfig& c) {
  if (!c.enable_ssd_offload) return absl::OkStatus();
  if (c.ssd_offload_path.empty() || c.ssd_offload_path.front() != '/') {
    return FieldError("ssd_offload_path (MOONCAKE_OFFLOAD_FILE_STORAGE_PATH)", c.ssd_offload_path,
                      "enable_ssd_offload needs an absolute directory");
  }
  if (c.global_segment_size == 0) {
    return FieldError("enable_ssd_offload (MOONCAKE_ENABLE_SSD_OFFLOAD)", "true",
                      "needs global_segment_size > 0: the SSD tier keeps this client's segment");
  }
  if (!(c.offload_high_watermark > 0 && c.offload_high_watermark <= 1)) {
    return FieldError("MOONCAKE_OFFLOAD_DISK_EVICTION_HIGH_WATERMARK_RATIO",
                      absl::StrCat(c.offload_high_watermark), "must be in (0, 1]");
  }
  if (!(c.offload_low_watermark >= 0 && c.offload_low_watermark < c.offload_high_watermark)) {
    return FieldError("MOONCAKE_OFFLOAD_DISK_EVICTION_LOW_WATERMARK_RATIO",
                      absl::StrCat(c.offload_low_watermark), "must be in [0, high watermark)");
  }
  if (c.offload_bucket_size_limit < 4096 || c.offload_bucket_size_limit > (1ull << 30)) {
    return FieldError("MOONCAKE_OFFLOAD_BUCKET_SIZE_LIMIT_BYTES",
                      absl::StrCat(c.offload_bucket_size_limit), "must be in 4 KiB..1 GiB");
  }
  return absl::OkStatus();
}

absl::Status ClientConfig::Validate() const {
  if (absl::Status s = ValidateOffload(*this); !s.ok()) return s;
  if (local_hostname.empty()) {
    return FieldError("local_hostname (MOONCAKE_LOCAL_HOSTNAME)", local_hostname, "empty");
  }
  if (absl::Status s = ValidateMetadataServer(metadata_server); !s.ok()) return s;
  if (protocol != "tcp" && protocol != "rdma") {
    return FieldError("protocol (MOONCAKE_PROTOCOL)", protocol, "expected \"tcp\" or \"rdma\"");
  }
  if (master_server_address.empty()) {
    return FieldError("master_server_address (MOONCAKE_MASTER)", "",
                      "required: the host:port of mooncake_master, e.g. 127.0.0.1:50051");
  }
  if (absl::StartsWith(master_server_address, "etcd://")) {
    // High availability (docs/ha.md): the leader is found in etcd.
    const std::string endpoints = master_server_address.substr(7);
    bool any = false;
    for (absl::string_view e : absl::StrSplit(endpoints, absl::ByAnyChar(";,"))) {
      e = absl::StripAsciiWhitespace(e);
      if (e.empty()) continue;
      if (!IsHostPort(std::string(e))) {
        return FieldError("master_server_address (MOONCAKE_MASTER)", master_server_address,
                          absl::StrCat("etcd endpoint '", e, "' is not host:port"));
      }
      any = true;
    }
    if (!any) {
      return FieldError("master_server_address (MOONCAKE_MASTER)", master_server_address,
                        "expected etcd://host:port[;host:port...]");
    }
  } else if (!IsHostPort(master_server_address)) {
    return FieldError("master_server_address (MOONCAKE_MASTER)", master_server_address,
                      "expected host:port with a port from 1 to 65535");
  }
  if (!device_name.empty()) {
    absl::StatusOr<std::vector<std::string>> devices = DevicesForRank(device_name, 0);
    if (!devices.ok() && absl::StartsWith(absl::StripLeadingAsciiWhitespace(device_name), "{") &&
        devices.status().code() != absl::StatusCode::kNotFound) {
      return FieldError("device_name (MOONCAKE_DEVICE)", device_name, devices.status().message());
    }
  }
  return absl::OkStatus();
}

std::optional<std::string> ProcessEnv(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

absl::Status ApplyOffloadEnv(const EnvLookup& env, ClientConfig* config) {
  if (std::optional<std::string> v = env("MOONCAKE_ENABLE_SSD_OFFLOAD"); v.has_value()) {
    const std::string b = absl::AsciiStrToLower(absl::StripAsciiWhitespace(*v));
    if (b == "1" || b == "true" || b == "yes" || b == "on") {
      config->enable_ssd_offload = true;
    } else if (!(b.empty() || b == "0" || b == "false" || b == "no" || b == "off")) {
      return FieldError("MOONCAKE_ENABLE_SSD_OFFLOAD", *v, "expected true or false");
    }
  }
  if (std::optional<std::string> v = env("MOONCAKE_OFFLOAD_STORAGE_BACKEND_DESCRIPTOR");
      v.has_value() && !v->empty() && *v != "bucket_storage_backend") {
    return FieldError("MOONCAKE_OFFLOAD_STORAGE_BACKEND_DESCRIPTOR", *v,
                      "only bucket_storage_backend is provided (bucket files that survive a "
                      "restart)");
  }
  if (config->ssd_offload_path.empty()) {
    if (std::optional<std::string> v = env("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH"); v.has_value()) {
      config->ssd_offload_path = *v;
    }
  }
  struct SizeVar {
    const char* name;
    uint64_t* field;
  };
  for (const SizeVar& var :
       {SizeVar{"MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES", &config->offload_total_size_limit},
        SizeVar{"MOONCAKE_OFFLOAD_BUCKET_SIZE_LIMIT_BYTES", &config->offload_bucket_size_limit}}) {
    std::optional<std::string> v = env(var.name);
    if (!v.has_value()) continue;
    absl::StatusOr<uint64_t> parsed = ParseByteSize(*v);
    if (!parsed.ok()) return FieldError(var.name, *v, parsed.status().message());
    *var.field = *parsed;
  }
  struct RatioVar {
    const char* name;
    double* field;
  };
  for (const RatioVar& var : {RatioVar{"MOONCAKE_OFFLOAD_DISK_EVICTION_HIGH_WATERMARK_RATIO",
                                       &config->offload_high_watermark},
                              RatioVar{"MOONCAKE_OFFLOAD_DISK_EVICTION_LOW_WATERMARK_RATIO",
                                       &config->offload_low_watermark}}) {
    std::optional<std::string> v = env(var.name);
    if (!v.has_value()) continue;
    double d = 0;
    if (!absl::SimpleAtod(*v, &d)) return FieldError(var.name, *v, "not a number");
    *var.field = d;
  }
  return absl::OkStatus();
}

absl::StatusOr<ClientConfig> LoadClientConfigFromEnv(const EnvLookup& env) {
  ClientConfig config;
  struct StringVar {
    const char* name;
    std::string* field;
  };
  const StringVar strings[] = {
      {"MOONCAKE_LOCAL_HOSTNAME", &config.local_hostname},
      {"MOONCAKE_TE_META_DATA_SERVER", &config.metadata_server},
      {"MOONCAKE_PROTOCOL", &config.protocol},
      {"MOONCAKE_DEVICE", &config.device_name},
      {"MOONCAKE_MASTER", &config.master_server_address},
  };
  for (const StringVar& var : strings) {
    if (std::optional<std::string> v = env(var.name); v.has_value()) *var.field = *v;
  }
  config.protocol = absl::AsciiStrToLower(config.protocol);
  struct SizeVar {
    const char* name;
    uint64_t* field;
  };
  const SizeVar sizes[] = {
      {"MOONCAKE_GLOBAL_SEGMENT_SIZE", &config.global_segment_size},
      {"MOONCAKE_LOCAL_BUFFER_SIZE", &config.local_buffer_size},
  };
  for (const SizeVar& var : sizes) {
    std::optional<std::string> v = env(var.name);
    if (!v.has_value()) continue;
    absl::StatusOr<uint64_t> parsed = ParseByteSize(*v);
    if (!parsed.ok()) return FieldError(var.name, *v, parsed.status().message());
    *var.field = *parsed;
  }
  if (absl::Status s = ApplyOffloadEnv(env, &config); !s.ok()) return s;
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  return config;
}

absl::StatusOr<ClientConfig> LoadClientConfigFromJson(absl::string_view json_text) {
  Json root = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("config is not valid JSON");
  if (!root.is_object()) return absl::InvalidArgumentError("config must be a JSON object");
  ClientConfig config;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& key = it.key();
    absl::Status s;
    if (key == "local_hostname") {
      s = ApplyString(*it, key, &config.local_hostname);
    } else if (key == "metadata_server") {
      s = ApplyString(*it, key, &config.metadata_server);
    } else if (key == "protocol") {
      s = ApplyString(*it, key, &config.protocol);
      config.protocol = absl::AsciiStrToLower(config.protocol);
    } else if (key == "device_name") {
      // SGLang also accepts a JSON map here; keep it in its serialized form.
      if (it->is_object()) {
        config.device_name = it->dump();
      } else {
        s = ApplyString(*it, key, &config.device_name);
      }
    } else if (key == "master_server_address") {
      s = ApplyString(*it, key, &config.master_server_address);
    } else if (key == "global_segment_size") {
      s = ApplySize(*it, key, &config.global_segment_size);
    } else if (key == "local_buffer_size") {
      s = ApplySize(*it, key, &config.local_buffer_size);
    } else if (key == "enable_ssd_offload") {
      if (!it->is_boolean()) {
        s = FieldError(key, it->dump(), "expected true or false");
      } else {
        config.enable_ssd_offload = it->get<bool>();
      }
    } else if (key == "ssd_offload_path") {
      s = ApplyString(*it, key, &config.ssd_offload_path);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown config field \"", key,
          "\" (known: local_hostname, metadata_server, global_segment_size, local_buffer_size, "
          "protocol, device_name, master_server_address, enable_ssd_offload, ssd_offload_path)"));
    }
    if (!s.ok()) return s;
  }
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  return config;
}

absl::StatusOr<ClientConfig> LoadClientConfigFromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open config file ", path));
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<ClientConfig> config = LoadClientConfigFromJson(buf.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

absl::StatusOr<std::vector<std::string>> DevicesForRank(absl::string_view device_name, int rank) {
  std::vector<std::string> out;
  absl::string_view trimmed = absl::StripAsciiWhitespace(device_name);
  auto add_list = [&out](absl::string_view list) {
    for (absl::string_view d : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
      out.emplace_back(absl::StripAsciiWhitespace(d));
    }
  };
  if (!absl::StartsWith(trimmed, "{")) {
    add_list(trimmed);
    return out;
  }
  Json map = Json::parse(trimmed.begin(), trimmed.end(), nullptr, false);
  if (map.is_discarded() || !map.is_object()) {
    return absl::InvalidArgumentError("device map is not a JSON object");
  }
  auto it = map.find(std::to_string(rank));
  if (it == map.end()) {
    return absl::NotFoundError(absl::StrCat("device map has no entry for rank ", rank));
  }
  if (it->is_string()) {
    add_list(it->get<std::string>());
  } else if (it->is_array()) {
    for (const Json& d : *it) {
      if (!d.is_string()) return absl::InvalidArgumentError("device names must be strings");
      out.push_back(d.get<std::string>());
    }
  } else {
    return absl::InvalidArgumentError("device map entries must be a string or a list");
  }
  return out;
}

}  // namespace mooncake
