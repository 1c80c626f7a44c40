// EtcdMasterClient: the MasterClient for a highly available master (docs/ha.md), used for a
// master address "etcd://host:port[;host:port...]". It reads the leader's gRPC address from
// mooncake-store/<cluster_id>/master_view in etcd, talks to it through a GrpcMasterClient, and when
// the leader is gone or answers that it is a standby, finds the new one and repeats the call, for
// up to `failover_timeout`.
//
// Only calls that are safe to repeat are repeated after a failure that may have run them:
// exist, get-replica-list, heartbeat, list, mount/remount/unmount, and put-start/put-end/
// put-revoke with the client's put ids (a repeat finds its own put). A call a standby refused
// (UNAVAILABLE_IN_CURRENT_STATUS) never ran, so any call is repeated then. So a put in flight
// at a failover either completes at the new leader or fails cleanly; never half-visible.
#ifndef MOONCAKE_MASTER_ETCD_MASTER_CLIENT_H_
#define MOONCAKE_MASTER_ETCD_MASTER_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/master/grpc_master_client.h"
#include "mooncake/master/ha/etcd_ha_client.h"

namespace mooncake {

struct EtcdMasterClientOptions {
  // "etcd://h1:p1;h2:p2".
  std::string address;
  // The HA group (mooncake_master --cluster_id); empty: $MOONCAKE_CLUSTER_ID, else
  // "mooncake_cluster".
  std::string cluster_id;
  // Deadline of one attempt.
  absl::Duration rpc_timeout = absl::Seconds(2);
  // How long a call keeps following failovers before it fails.
  absl::Duration failover_timeout = absl::Seconds(10);
  // Presented to every master (MC_AUTH_TOKEN); "" = none.
  std::string auth_token;
};

class EtcdMasterClient final : public MasterClient {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdMasterClient>> Create(
      const EtcdMasterClientOptions& options);

  // The leader's address as last resolved ("" before the first call).
  std::string leader() const;

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
  EtcdMasterClient(const EtcdMasterClientOptions& options, std::string cluster_id,
                   std::unique_ptr<ha::EtcdHaClient> etcd);
  // The client for the current leader, resolving it if needed; null (and *error) if none.
  std::shared_ptr<GrpcMasterClient> Leader(absl::Status* error);
  // Forgets `stale` so the next call resolves the leader again.
  void Forget(const std::shared_ptr<GrpcMasterClient>& stale);
  // Runs `call` on the leader, following failovers; `safe`: may be repeated after it may have run.
  template <typename Call>
  auto Run(bool safe, Call call) -> decltype(call(std::declval<GrpcMasterClient&>()));

  const EtcdMasterClientOptions options_;
  const std::string key_;
  const std::unique_ptr<ha::EtcdHaClient> etcd_;
  mutable absl::Mutex mu_;
  std::shared_ptr<GrpcMasterClient> current_ ABSL_GUARDED_BY(mu_);
  std::string leader_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_ETCD_MASTER_CLIENT_H_
