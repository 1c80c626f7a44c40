// HaCoordinator: leader election on etcd and the in-sync set of standbys (docs/ha.md).
//
// Every master holds an etcd lease and a member key on it. The leader holds
// mooncake-store/<cluster_id>/master_view (its gRPC address, what clients read) on its lease.
// mooncake-store/<cluster_id>/ha/insync names the masters that hold every change the leader
// acknowledged; only those may take over (or, once every one of them is gone, any master, with an
// empty state: that loss is logged and counted).
//
// Fencing: the leader serves only until `last acknowledged keepalive sent + lease TTL - margin` on
// CLOCK_BOOTTIME. etcd cannot expire the lease before `sent + TTL`, so the old leader has stopped
// before anyone else can be elected, provided the two clocks' rates differ by less than the margin
// over one TTL (no synchronized clocks needed).
#ifndef MOONCAKE_MASTER_HA_HA_COORDINATOR_H_
#define MOONCAKE_MASTER_HA_HA_COORDINATOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mooncake/master/ha/etcd_ha_client.h"
#include "mooncake/master/ha/replication.h"
#include "mooncake/master/master_service.h"

namespace mooncake::ha {

struct HaOptions {
  std::vector<std::string> etcd_endpoints;
  std::string cluster_id = "mooncake_cluster";
  // etcd lease TTL, whole seconds (etcd grants at least about 2 with its default timings).
  int64_t lease_ttl_seconds = 2;
  // How other masters and clients reach this one.
  std::string advertise_host = "127.0.0.1";
  int grpc_port = 0;
  int metrics_port = 0;
  // Replication listener (0 = ephemeral) on `bind_host`.
  std::string bind_host = "127.0.0.1";
  int replication_port = 0;
  // A standby that has not confirmed a record for this long leaves the in-sync set.
  absl::Duration ack_timeout = absl::Seconds(1);
  absl::Duration poll_interval = absl::Milliseconds(50);
  // Per-endpoint etcd timeouts: a hung member costs one of these.
  absl::Duration etcd_timeout = absl::Milliseconds(300);
  // MC_AUTH_TOKEN ("" = off): sent in the Hello of every stream this master leads, and required
  // of every stream it follows (docs/compatibility.md section 7).
  std::string auth_token;
};

class HaCoordinator {
 public:
  // Start connects to etcd, registers this master and begins following or leading. `service`
  // and `log` (the service's journal) must outlive the coordinator.
  static absl::StatusOr<std::unique_ptr<HaCoordinator>> Start(const HaOptions& options,
                                                              MasterService* service,
                                                              ReplicationLog* log);
  ~HaCoordinator();

  // Serving: this master leads and its lease is certainly still valid. Cheap (hot path).
  bool Serving() const;
  // The gRPC address of the leader as last seen ("" if none).
  std::string LeaderAddress() const;
  std::string id() const { return id_; }
  // "leader" or "standby".
  std::string RoleName() const { return Serving() ? "leader" : "standby"; }
  // A JSON document for /ha_status.
  std::string StatusJson() const;
  int replication_port() const { return receiver_->port(); }
  // Replication streams refused for a missing or wrong auth token.
  uint64_t auth_refusals() const { return auth_refusals_.load(); }

  void Stop();

 private:
  HaCoordinator(const HaOptions& options, MasterService* service, ReplicationLog* log,
                std::unique_ptr<EtcdHaClient> etcd);
  std::string Key(const std::string& suffix) const;
  static int64_t BootNanos();

  void KeepAliveLoop();
  void MainLoop();
  void EnsureLease();
  void FollowOrCampaign();
  void Campaign(const absl::optional<EtcdKeyValue>& insync);
  void Lead();
  void ManageLinks();
  void StepDown(const std::string& why);
  // Writes the in-sync set (guarded by our leadership); false if we no longer lead.
  absl::StatusOr<bool> WriteInSync(const std::set<std::string>& members);
  bool AcceptStream(const proto::ha::Hello& hello);

  const HaOptions options_;
  MasterService* const service_;
  ReplicationLog* const log_;
  const std::unique_ptr<EtcdHaClient> etcd_;
  const std::unique_ptr<EtcdHaClient> keepalive_etcd_;  // its own connection
  std::string id_;
  std::unique_ptr<ReplicationReceiver> receiver_;

  std::atomic<bool> leading_{false};
  std::atomic<int64_t> lease_deadline_ns_{0};  // CLOCK_BOOTTIME
  std::atomic<int64_t> lease_{0};
  std::atomic<int64_t> term_{0};
  std::atomic<uint64_t> auth_refusals_{0};

  mutable absl::Mutex mu_;
  std::string leader_address_ ABSL_GUARDED_BY(mu_);
  std::string leader_id_ ABSL_GUARDED_BY(mu_);
  int64_t leader_term_ ABSL_GUARDED_BY(mu_) = 0;
  // Our service holds the state of our own last leadership (no other leader's stream since).
  bool own_state_ ABSL_GUARDED_BY(mu_) = true;
  bool ever_led_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> insync_ ABSL_GUARDED_BY(mu_);
  std::string last_event_ ABSL_GUARDED_BY(mu_);
  uint64_t failovers_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t empty_takeovers_ ABSL_GUARDED_BY(mu_) = 0;

  int64_t next_member_scan_ns_ = 0;
  int64_t next_leader_check_ns_ = 0;
  std::set<std::string> linked_;  // standby ids with a link (main loop only)
  absl::Notification stop_;
  std::thread keepalive_;
  std::thread main_;
};

}  // namespace mooncake::ha

#endif  // MOONCAKE_MASTER_HA_HA_COORDINATOR_H_
