// LocalMasterClient: a MasterClient that calls a MasterService in the same process, with no RPC.
// For tests of code that talks to the master, and for the simulator (which adds its own delays and
// faults around it).
//
//   MasterService service(options, &clock);
//   LocalMasterClient master(&service);
//   auto r = master.BatchExistKey(keys);
#ifndef MOONCAKE_MASTER_LOCAL_MASTER_CLIENT_H_
#define MOONCAKE_MASTER_LOCAL_MASTER_CLIENT_H_

#include "mooncake/master/master_client.h"
#include "mooncake/master/master_service.h"

namespace mooncake {

class LocalMasterClient final : public MasterClient {
 public:
  // `service` must outlive the client.
  explicit LocalMasterClient(MasterService* service) : service_(service) {}

  absl::StatusOr<std::vector<ErrorCode>> BatchExistKey(absl::Span<const std::string> keys) override;
  absl::StatusOr<ReplicaListResult> BatchGetReplicaList(
      absl::Span<const std::string> keys) override;
  absl::StatusOr<std::vector<ObjectReplicas>> BatchPutStart(
      absl::Span<const std::string> keys, absl::Span<const uint64_t> sizes,
      const ReplicateConfig& config, absl::Span<const uint64_t> put_ids) override;
  absl::StatusOr<std::vector<ErrorCode>> BatchPutEnd(absl::Span<const std::string> keys,
                                                     absl::Span<const uint64_t> put_ids) override;
  absl::StatusOr<std::vector<ErrorCode>> BatchPutRevoke(absl::Span<const std::string> keys,
                                                        absl::Span<const uint64_t> put_ids,
                                                        bool quarantine) override;
  absl::StatusOr<std::vector<ErrorCode>> BatchRemove(absl::Span<const std::string> keys,
                                                     bool force) override;
  absl::StatusOr<uint64_t> RemoveByRegex(const std::string& regex, bool force) override;
  absl::StatusOr<uint64_t> RemoveAll(bool force) override;
  absl::Status MountSegment(const ClientId& client, const SegmentDesc& segment) override;
  absl::Status RemountSegment(const ClientId& client,
                              absl::Span<const SegmentDesc> segments) override;
  absl::Status UnmountSegment(const ClientId& client, const std::string& name,
                              uint64_t base) override;
  absl::StatusOr<HeartbeatResult> Heartbeat(const ClientId& client) override;
  absl::StatusOr<std::vector<SegmentStatus>> ListSegments() override;
  absl::StatusOr<OffloadSyncResult> OffloadSync(const ClientId& client,
                                                const OffloadSyncRequest& request) override;

 private:
  MasterService* const service_;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_LOCAL_MASTER_CLIENT_H_
