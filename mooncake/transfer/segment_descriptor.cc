#include "mooncake/transfer/segment_descriptor.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace mooncake {

using Json = nlohmann::json;

namespace {

// BadField is thrown inside the parsers' try blocks for a field of the wrong type or range.
struct BadField {
  std::string message;
};

// Integer reads a JSON integer into T, refusing floats, booleans and out-of-range values: nlohmann
// would convert 1e100 to int with a static_cast, which is undefined behaviour (found by
// segment_descriptor_fuzz under UBSan).
template <typename T>
T Integer(const Json& v, const char* field) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= 0 ? static_cast<uint64_t>(i) <= static_cast<uint64_t>(std::numeric_limits<T>::max())
               : std::numeric_limits<T>::is_signed && i >= int64_t{std::numeric_limits<T>::min()}) {
      return static_cast<T>(i);
    }
  }
  throw BadField{absl::StrCat(field, " must be an integer in range, not ", v.dump())};
}

template <typename T>
T OptionalInteger(const Json& j, const char* field, T fallback) {
  auto it = j.find(field);
  return it == j.end() ? fallback : Integer<T>(*it, field);
}

std::vector<uint32_t> Keys(const Json& v, const char* field) {
  if (!v.is_array()) throw BadField{absl::StrCat(field, " must be an array")};
  std::vector<uint32_t> keys;
  for (const Json& k : v) keys.push_back(Integer<uint32_t>(k, field));
  return keys;
}

}  // namespace

const BufferDesc* SegmentDescriptor::FindBuffer(uint64_t addr, uint64_t length) const {
  uint64_t end = addr + length;
  if (end < addr) return nullptr;
  for (const BufferDesc& b : buffers) {
    if (addr >= b.addr && end <= b.addr + b.length) return &b;
  }
  return nullptr;
}

bool SegmentDescriptor::Covers(uint64_t addr, uint64_t length) const {
  const uint64_t end = addr + length;
  if (end < addr || length == 0) return false;
  for (uint64_t at = addr; at < end;) {
    const BufferDesc* b = FindBuffer(at, 1);
    if (b == nullptr) return false;
    at = b->addr + b->length;
  }
  return true;
}

std::string SegmentDescriptorToJson(const SegmentDescriptor& desc) {
  Json j;
  j["name"] = desc.name;
  j["protocol"] = desc.protocol;
  j["devices"] = Json::array();
  for (const DeviceDesc& d : desc.devices) {
    j["devices"].push_back({{"name", d.name}, {"lid", d.lid}, {"gid", d.gid}});
  }
  j["priority_matrix"] = Json::object();
  for (const auto& [location, lists] : desc.priority_matrix) {
    j["priority_matrix"][location] = {lists.first, lists.second};
  }
  j["buffers"] = Json::array();
  for (const BufferDesc& b : desc.buffers) {
    j["buffers"].push_back({{"name", b.name},
                            {"addr", b.addr},
                            {"length", b.length},
                            {"rkey", b.rkey},
                            {"lkey", b.lkey},
                            {"shm", b.shm}});
  }
  j["host_id"] = desc.host_id;
  j["shm_socket"] = desc.shm_socket;
  j["tcp_host"] = desc.tcp_host;
  j["tcp_port"] = desc.tcp_port;
  j["instance"] = desc.instance;
  return j.dump();
}

absl::StatusOr<SegmentDescriptor> ParseSegmentDescriptor(absl::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("segment descriptor is not a JSON object");
  }
  SegmentDescriptor d;
  try {
    d.name = j.at("name").get<std::string>();
    d.protocol = j.value("protocol", std::string("tcp"));
    if (j.contains("devices")) {
      for (const Json& dev : j.at("devices")) {
        d.devices.push_back({dev.at("name").get<std::string>(),
                             OptionalInteger<uint32_t>(dev, "lid", 0),
                             dev.value("gid", std::string())});
      }
    }
    if (j.contains("priority_matrix")) {
      for (auto it = j.at("priority_matrix").begin(); it != j.at("priority_matrix").end(); ++it) {
        const Json& lists = it.value();
        if (!lists.is_array() || lists.size() != 2) {
          return absl::InvalidArgumentError(
              absl::StrCat("segment descriptor priority_matrix[", it.key(), "] is not a pair"));
        }
        d.priority_matrix[it.key()] = {lists[0].get<std::vector<std::string>>(),
                                       lists[1].get<std::vector<std::string>>()};
      }
    }
    for (const Json& b : j.at("buffers")) {
      BufferDesc buf;
      buf.name = b.value("name", std::string("cpu:0"));
      if (!b.at("addr").is_number_unsigned() || !b.at("length").is_number_unsigned()) {
        return absl::InvalidArgumentError(
            "segment descriptor buffer addr/length must be non-negative integers");
      }
      buf.addr = b.at("addr").get<uint64_t>();
      buf.length = b.at("length").get<uint64_t>();
      if (b.contains("rkey")) buf.rkey = Keys(b.at("rkey"), "rkey");
      if (b.contains("lkey")) buf.lkey = Keys(b.at("lkey"), "lkey");
      buf.shm = b.value("shm", false);
      d.buffers.push_back(std::move(buf));
    }
    d.host_id = j.value("host_id", std::string());
    d.shm_socket = j.value("shm_socket", std::string());
    d.tcp_host = j.value("tcp_host", std::string());
    d.tcp_port = OptionalInteger<int>(j, "tcp_port", 0);
    d.instance = OptionalInteger<uint64_t>(j, "instance", 0);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed segment descriptor: ", e.what()));
  } catch (const BadField& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed segment descriptor: ", e.message));
  }
  if (d.name.empty()) return absl::InvalidArgumentError("segment descriptor has an empty name");
  return d;
}

std::string RpcMetaToJson(const RpcMeta& meta) {
  return Json{{"ip_or_host_name", meta.ip_or_host_name}, {"rpc_port", meta.rpc_port}}.dump();
}

absl::StatusOr<RpcMeta> ParseRpcMeta(absl::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("rpc_meta is not a JSON object");
  }
  RpcMeta meta;
  try {
    meta.ip_or_host_name = j.at("ip_or_host_name").get<std::string>();
    meta.rpc_port = Integer<int>(j.at("rpc_port"), "rpc_port");
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed rpc_meta: ", e.what()));
  } catch (const BadField& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed rpc_meta: ", e.message));
  }
  if (meta.rpc_port <= 0 || meta.rpc_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("rpc_meta has bad port ", meta.rpc_port));
  }
  return meta;
}

std::string SegmentDescriptorKey(absl::string_view name) {
  return absl::StrCat("mooncake/ram/", name);
}

std::string RpcMetaKey(absl::string_view name) { return absl::StrCat("mooncake/rpc_meta/", name); }

}  // namespace mooncake
