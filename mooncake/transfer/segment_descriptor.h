// SegmentDescriptor: what a transfer engine publishes about its memory so peers can reach it, in
// Mooncake's JSON shape (key "mooncake/ram/<name>"), plus RpcMeta ("mooncake/rpc_meta/<name>").
//
// Fields beyond Mooncake's (host_id, shm_socket, tcp_host, tcp_port, buffers[].shm) are extensions
// that Mooncake readers ignore. Parsing never trusts its input: a malformed descriptor is an error,
// not a crash.
#ifndef MOONCAKE_TRANSFER_SEGMENT_DESCRIPTOR_H_
#define MOONCAKE_TRANSFER_SEGMENT_DESCRIPTOR_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mooncake {

struct DeviceDesc {
  std::string name;  // e.g. "erdma_0"
  uint32_t lid = 0;
  std::string gid;  // "fe80:0000:..."
};

struct BufferDesc {
  std::string name = "cpu:0";  // location tag
  uint64_t addr = 0;
  uint64_t length = 0;
  std::vector<uint32_t> rkey;  // one per device, in `devices` order (RDMA only)
  std::vector<uint32_t> lkey;
  bool shm = false;  // backed by a memfd that same-host peers can map
};

struct SegmentDescriptor {
  std::string name;
  std::string protocol = "tcp";
  std::vector<DeviceDesc> devices;
  // location -> {preferred device names, other device names}
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>
      priority_matrix;
  std::vector<BufferDesc> buffers;
  // Extensions.
  std::string host_id;     // equal host ids mean shared memory can be mapped
  std::string shm_socket;  // abstract unix socket that hands out memfds, "" if none
  std::string tcp_host;
  int tcp_port = 0;
  // The publishing process, random per TransferEngine (0 = unknown): tells a restarted process
  // apart from its previous incarnation under the same name.
  uint64_t instance = 0;

  // FindBuffer returns the buffer wholly containing [addr, addr + length), or nullptr.
  const BufferDesc* FindBuffer(uint64_t addr, uint64_t length) const;
  // Covers is true when every byte of [addr, addr + length) lies in some buffer: the range may
  // span adjacent buffers (an RDMA segment publishes one buffer per MR chunk).
  bool Covers(uint64_t addr, uint64_t length) const;
};

struct RpcMeta {
  std::string ip_or_host_name;
  int rpc_port = 0;
};

std::string SegmentDescriptorToJson(const SegmentDescriptor& desc);
absl::StatusOr<SegmentDescriptor> ParseSegmentDescriptor(absl::string_view json);

std::string RpcMetaToJson(const RpcMeta& meta);
absl::StatusOr<RpcMeta> ParseRpcMeta(absl::string_view json);

// Metadata keys, as Mooncake names them.
std::string SegmentDescriptorKey(absl::string_view segment_name);  // "mooncake/ram/<name>"
std::string RpcMetaKey(absl::string_view segment_name);            // "mooncake/rpc_meta/<name>"

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_SEGMENT_DESCRIPTOR_H_
