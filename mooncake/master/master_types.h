// Plain value types shared by MasterService, the MasterClient seam and the gRPC adapter: client
// identities, segments, replicas, replicate configs and per-key batch results. They mirror
// mooncake/proto/master.proto field for field, so converting is mechanical.
#ifndef MOONCAKE_MASTER_MASTER_TYPES_H_
#define MOONCAKE_MASTER_MASTER_TYPES_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "mooncake/common/error_code.h"

namespace mooncake {

// Limits every master entry point enforces; larger requests are rejected with INVALID_PARAMS
// (batch) or INVALID_KEY (key) and change nothing.
inline constexpr size_t kMaxBatchKeys = 16384;
inline constexpr size_t kMaxKeyLength = 4096;
inline constexpr int kMaxReplicaNum = 8;
inline constexpr uint64_t kMaxObjectSize = uint64_t{1} << 40;  // 1 TiB
inline constexpr size_t kMaxSegmentNameLength = 1024;
inline constexpr size_t kMaxRegexLength = 4096;

// ClientId is a store client's random 128-bit identity. {0, 0} is invalid.
struct ClientId {
  uint64_t high = 0;
  uint64_t low = 0;

  bool valid() const { return high != 0 || low != 0; }
  friend bool operator==(const ClientId& a, const ClientId& b) {
    return a.high == b.high && a.low == b.low;
  }
  friend bool operator!=(const ClientId& a, const ClientId& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const ClientId& id) {
    return H::combine(std::move(h), id.high, id.low);
  }
  // ToString renders the id as 32 hex digits.
  std::string ToString() const;
};

// SegmentDesc is a range [base, base + size) of a client's registered memory, published by the
// transfer engine under segment `name`. A mounted segment is identified by (name, base).
// `instance` names the publishing process (TransferEngine::instance(); 0 = unknown): a process
// restarted under the same name, even at the same addresses, has another, so a replica of the old
// incarnation is never read from the new one's memory.
struct SegmentDesc {
  std::string name;
  uint64_t base = 0;
  uint64_t size = 0;
  uint64_t instance = 0;

  friend bool operator==(const SegmentDesc& a, const SegmentDesc& b) {
    return a.name == b.name && a.base == b.base && a.size == b.size && a.instance == b.instance;
  }
};

// ReplicaDesc is one complete copy of an object: `size` bytes at absolute `address` in segment
// `segment_name`, as mounted by the process `segment_instance` (see SegmentDesc).
// A `disk` replica is the copy in the SSD tier of the process serving `segment_name`
// (docs/ssd_tier.md): `address` is 0, and the bytes are read by asking that process.
struct ReplicaDesc {
  std::string segment_name;
  uint64_t address = 0;
  uint64_t size = 0;
  uint64_t segment_instance = 0;
  bool disk = false;

  friend bool operator==(const ReplicaDesc& a, const ReplicaDesc& b) {
    return a.segment_name == b.segment_name && a.address == b.address && a.size == b.size &&
           a.segment_instance == b.segment_instance && a.disk == b.disk;
  }
};

// ReplicateConfig says how a put places its object.
struct ReplicateConfig {
  // Copies on distinct segment names, 1..kMaxReplicaNum.
  int replica_num = 1;
  // Evicted only after every unpinned object.
  bool with_soft_pin = false;
  // Never evicted (still removable).
  bool with_hard_pin = false;
  // Segment names tried first, in order.
  std::vector<std::string> preferred_segments;
};

// ObjectReplicas is the per-key result of get-replica-list and put-start. `replicas` and `size` are
// meaningful only when `error` is OK.
struct ObjectReplicas {
  ErrorCode error = ErrorCode::OK;
  uint64_t size = 0;
  std::vector<ReplicaDesc> replicas;
  // From PutStart: names this put, so PutEnd / PutRevoke act on it and never on a later put of
  // the same key (after the master dropped this one). 0 elsewhere.
  uint64_t put_id = 0;
};

// ReplicaListResult answers BatchGetReplicaList: per-key results and the read lease they carry.
struct ReplicaListResult {
  std::vector<ObjectReplicas> objects;
  // Every OK object is leased for at least this long from when the master handled the call.
  absl::Duration lease_ttl;
};

// HeartbeatResult tells a client whether the master still knows it.
struct HeartbeatResult {
  // The master has no record of the client (restart or client_ttl expiry): remount every segment.
  bool need_remount = false;
  absl::Duration client_ttl;
  // The master's fast RPC port (0 = none), filled in by the gRPC adapter.
  int fast_rpc_port = 0;
};

// DiskObjectRef names one object in a storage process's SSD tier.
struct DiskObjectRef {
  std::string key;
  uint64_t put_id = 0;
  uint64_t size = 0;
};

// OffloadSyncRequest is what a storage process's SSD tier tells the master (OffloadSync).
struct OffloadSyncRequest {
  // Written and durable, as asked by an OffloadTask.
  std::vector<DiskObjectRef> stored;
  // Found on disk at startup: the master makes them objects again unless the key is taken.
  std::vector<DiskObjectRef> recovered;
  // No longer on disk (evicted by the tier's watermark, failed its checksum, disk lost), or
  // handed out but not stored (the write failed): the master stops holding them.
  std::vector<DiskObjectRef> lost;
  // How many new objects to write it may take now.
  uint32_t max_tasks = 0;
};

// OffloadTask asks a storage process to copy an object from its own segment (at `address`) to
// its disk. The object is held (neither evicted nor removed unless forced) until the process
// reports the copy stored or lost; after a forced remove the report is refused.
struct OffloadTask {
  std::string key;
  uint64_t put_id = 0;
  uint64_t size = 0;
  uint64_t address = 0;
};

struct OffloadSyncResult {
  std::vector<OffloadTask> tasks;
  // Disk copies to delete: of objects removed since, and reports the master refused (the key
  // now names another put, or is gone).
  std::vector<DiskObjectRef> drop;
};

// SegmentStatus describes one mounted segment.
struct SegmentStatus {
  SegmentDesc segment;
  ClientId owner;
  uint64_t allocated = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_TYPES_H_
