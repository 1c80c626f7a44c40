// Reading etcd's JSON gateway replies (proto3 JSON: int64 as strings, zero values omitted,
// bytes as base64). Shared by the metadata backend and the master's HA client.
#ifndef MOONCAKE_METADATA_ETCD_JSON_H_
#define MOONCAKE_METADATA_ETCD_JSON_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "nlohmann/json.hpp"

namespace mooncake::metadata {

// ParseEtcdReply parses the body of a 200 reply; `what` names the operation in the error.
inline absl::StatusOr<nlohmann::json> ParseEtcdReply(const std::string& body,
                                                     const std::string& what) {
  nlohmann::json reply = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object()) {
    return MakeError(ErrorCode::ETCD_OPERATION_ERROR,
                     absl::StrCat("etcd ", what,
                                  ": reply is not a JSON object (is the endpoint an etcd 3.4+ "
                                  "client URL?)"));
  }
  return reply;
}

// EtcdJsonInt reads an int64 field; 0 when absent (proto3 JSON omits zero values).
inline int64_t EtcdJsonInt(const nlohmann::json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  int64_t value = 0;
  if (it->is_string() && absl::SimpleAtoi(it->get<std::string>(), &value)) return value;
  return 0;
}

// EtcdJsonBytes reads a base64 bytes field; empty when absent or malformed.
inline std::string EtcdJsonBytes(const nlohmann::json& object, const char* field) {
  auto it = object.find(field);
  std::string out;
  if (it != object.end() && it->is_string()) absl::Base64Unescape(it->get<std::string>(), &out);
  return out;
}

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_ETCD_JSON_H_
