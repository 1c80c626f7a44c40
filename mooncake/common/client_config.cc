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

absl::Status ClientConfig::Validate() const {
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
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown config field \"", key,
          "\" (known: local_hostname, metadata_server, global_segment_size, local_buffer_size, "
          "protocol, device_name, master_server_address)"));
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
