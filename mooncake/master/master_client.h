// MasterClient: the seam between a store client (or the simulator) and the master. One method per
// master RPC, with the same semantics as MasterService (see master_service.h). Implementations:
//   GrpcMasterClient   (grpc_master_client.h)   the real master over gRPC, with per-call deadlines
//   LocalMasterClient  (local_master_client.h)  a MasterService in the same process (tests, sim)
//
//   std::unique_ptr<MasterClient> master = ...;
//   auto exists = master->BatchExistKey(keys);   // absl::StatusOr<std::vector<ErrorCode>>
//   if (!exists.ok()) return exists.status();    // RPC_FAIL / RPC_TIMEOUT / INVALID_PARAMS ...
//   for (ErrorCode code : *exists) ...           // per key: OK, OBJECT_NOT_FOUND, ...
//
// A failed call (master unreachable, deadline exceeded, batch rejected) returns a status carrying
// its ErrorCode (ToErrorCode). Otherwise the result holds one entry per key, in order.
#ifndef MOONCAKE_MASTER_MASTER_CLIENT_H_
#define MOONCAKE_MASTER_MASTER_CLIENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "mooncake/common/error_code.h"
#include "mooncake/master/master_types.h"

namespace mooncake {

class MasterClient {
 public:
  virtual ~MasterClient() = default;

  // BatchExistKey: per key OK (a complete object exists; now leased) or OBJECT_NOT_FOUND.
  virtual absl::StatusOr<std::vector<ErrorCode>> BatchExistKey(
      absl::Span<const std::string> keys) = 0;

  // BatchGetReplicaList: per key the replicas and size (leased for result.lease_ttl), or
  // OBJECT_NOT_FOUND / REPLICA_IS_NOT_READY.
  virtual absl::StatusOr<ReplicaListResult> BatchGetReplicaList(
      absl::Span<const std::string> keys) = 0;

  // BatchPutStart: per key the replicas to write, or OBJECT_ALREADY_EXISTS / NO_AVAILABLE_HANDLE /
  // INVALID_PARAMS. `sizes` has one entry per key. `put_ids`: empty (the master names the puts),
  // or per key a nonzero id the client chose, which makes the call safe to repeat (a repeat finds
  // its own puts and answers their replicas again; see MasterService::BatchPutStart).
  virtual absl::StatusOr<std::vector<ObjectReplicas>> BatchPutStart(
      absl::Span<const std::string> keys, absl::Span<const uint64_t> sizes,
      const ReplicateConfig& config, absl::Span<const uint64_t> put_ids) = 0;

  // BatchPutEnd: PROCESSING -> COMPLETE. `put_ids`: empty, or per key the put_id from
  // BatchPutStart, so only that put is ended (see MasterService::BatchPutEnd).
  virtual absl::StatusOr<std::vector<ErrorCode>> BatchPutEnd(
      absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids) = 0;

  // BatchPutRevoke: frees PROCESSING objects (with `put_ids`, only those puts). With
  // `quarantine` the keys are freed at once but their space only after put_start_release_timeout:
  // for puts whose writes may still land (IsUnsettledWrite).
  virtual absl::StatusOr<std::vector<ErrorCode>> BatchPutRevoke(absl::Span<const std::string> keys,
                                                                absl::Span<const uint64_t> put_ids,
                                                                bool quarantine) = 0;

  // BatchRemove: OBJECT_HAS_LEASE unless `force`.
  virtual absl::StatusOr<std::vector<ErrorCode>> BatchRemove(absl::Span<const std::string> keys,
                                                             bool force) = 0;

  // RemoveByRegex / RemoveAll return the number of objects removed.
  virtual absl::StatusOr<uint64_t> RemoveByRegex(const std::string& regex, bool force) = 0;
  virtual absl::StatusOr<uint64_t> RemoveAll(bool force) = 0;

  virtual absl::Status MountSegment(const ClientId& client, const SegmentDesc& segment) = 0;
  virtual absl::Status RemountSegment(const ClientId& client,
                                      absl::Span<const SegmentDesc> segments) = 0;
  virtual absl::Status UnmountSegment(const ClientId& client, const std::string& name,
                                      uint64_t base) = 0;

  // Heartbeat: need_remount when the master does not know the client.
  virtual absl::StatusOr<HeartbeatResult> Heartbeat(const ClientId& client) = 0;

  virtual absl::StatusOr<std::vector<SegmentStatus>> ListSegments() = 0;

  // OffloadSync: the SSD tier of `client`'s process reports and takes work (see
  // MasterService::OffloadSync). NOT_SUPPORTED from a master without --enable_offload.
  virtual absl::StatusOr<OffloadSyncResult> OffloadSync(const ClientId& client,
                                                        const OffloadSyncRequest& request) = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_CLIENT_H_
