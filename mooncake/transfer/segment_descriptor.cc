#include "mooncake/transfer/segment_descriptor.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace mooncake {

using Json = nlohmann::json;

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
        d.devices.push_back({dev.at("name").get<std::string>(), dev.value("lid", 0u),
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
      if (b.contains("rkey")) buf.rkey = b.at("rkey").get<std::vector<uint32_t>>();
      if (b.contains("lkey")) buf.lkey = b.at("lkey").get<std::vector<uint32_t>>();
      buf.shm = b.value("shm", false);
      d.buffers.push_back(std::move(buf));
    }
    d.host_id = j.value("host_id", std::string());
    d.shm_socket = j.value("shm_socket", std::string());
    d.tcp_host = j.value("tcp_host", std::string());
    d.tcp_port = j.value("tcp_port", 0);
    d.instance = j.value("instance", uint64_t{0});
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed segment descriptor: ", e.what()));
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
    meta.rpc_port = j.at("rpc_port").get<int>();
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed rpc_meta: ", e.what()));
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
