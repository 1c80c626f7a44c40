// MasterServer: the shell around MasterService that mooncake_master runs. It owns the gRPC server
// (GrpcMasterService), the HTTP metrics server (/metrics, /get_all_segments, /health), the optional
// embedded HTTP metadata server, and the thread that calls MasterService::Tick(). Every listener
// binds `bind_address`.
//
//   MasterServerOptions options;
//   options.bind_address = "127.0.0.1";
//   options.port = 0;  // ephemeral, for tests; see port()
//   auto server = MasterServer::Start(options);
//   if (!server.ok()) return server.status();   // names the address that could not be bound
//   ... (*server)->port() ...
//   (*server)->Stop();
#ifndef MOONCAKE_MASTER_MASTER_SERVER_H_
#define MOONCAKE_MASTER_MASTER_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mooncake/common/clock.h"
#include "mooncake/master/ha/ha_coordinator.h"
#include "mooncake/master/ha/replication.h"
#include "mooncake/master/master_service.h"

namespace grpc {
class Server;
}  // namespace grpc
namespace httplib {
class Server;
}  // namespace httplib

namespace mooncake {

namespace metadata {
class HttpMetadataServer;
}  // namespace metadata

class GrpcMasterService;
class FastRpcServer;

struct MasterServerOptions {
  // Numeric IPv4/IPv6 address every listener binds.
  std::string bind_address = "0.0.0.0";
  // gRPC port; 0 picks a free one.
  int port = 50051;
  // gRPC polling threads; handlers run on them, and gRPC adds threads under load.
  int rpc_thread_num = 4;
  // HTTP metrics port; 0 picks a free one, -1 disables the metrics server.
  int metrics_port = 9003;
  bool enable_http_metadata_server = false;
  // The shared secret (MC_AUTH_TOKEN) the gRPC and fast RPC ports and the embedded metadata
  // server's writes require; "" = none (common/auth_token.h).
  std::string auth_token;
  // Address of the embedded metadata server; empty means bind_address.
  std::string http_metadata_server_host;
  // 0 picks a free one.
  int http_metadata_server_port = 8080;
  // Fast RPC port for hot per-key calls (master/fast_rpc.h); 0 picks a free one, -1 disables it.
  int fast_rpc_port = 0;
  // How often MasterService::Tick() runs (client TTL, abandoned puts, watermark eviction).
  absl::Duration tick_interval = absl::Milliseconds(100);
  MasterServiceOptions service;
  // High availability (docs/ha.md): leader election on etcd and synchronous replication to the
  // standbys. ha.grpc_port / ha.metrics_port are filled in from the bound ports.
  bool enable_ha = false;
  ha::HaOptions ha;
};

// ValidateMasterServerOptions names the first option out of range.
absl::Status ValidateMasterServerOptions(const MasterServerOptions& options);

class MasterServer {
 public:
  // Start validates `options`, binds every listener and starts serving. On failure nothing is
  // left running. `clock` must outlive the server.
  static absl::StatusOr<std::unique_ptr<MasterServer>> Start(const MasterServerOptions& options,
                                                             Clock* clock = RealClock::Get());
  // Stops the server.
  ~MasterServer();

  MasterServer(const MasterServer&) = delete;
  MasterServer& operator=(const MasterServer&) = delete;

  // Bound ports (the chosen ones when 0 was asked); 0 for a listener that is not running.
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  int metadata_port() const;
  int fast_rpc_port() const;

  MasterService* service() { return service_.get(); }
  // The HA coordinator, or null without --enable_ha.
  ha::HaCoordinator* ha() { return ha_.get(); }

  // Stop shuts every listener down and joins every thread. Idempotent.
  void Stop();

 private:
  explicit MasterServer(const MasterServerOptions& options, Clock* clock);
  absl::Status StartGrpc();
  absl::Status StartMetrics();
  absl::Status StartMetadata();
  absl::Status StartFastRpc();
  absl::Status StartHa();

  class Gate;
  const MasterServerOptions options_;
  // Declared before the service: the service journals into it.
  std::unique_ptr<ha::ReplicationLog> log_;
  std::unique_ptr<MasterService> service_;
  std::unique_ptr<Gate> gate_;
  std::unique_ptr<ha::HaCoordinator> ha_;
  std::atomic<ha::HaCoordinator*> ha_ready_{nullptr};
  std::unique_ptr<GrpcMasterService> grpc_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> metrics_server_;
  std::thread metrics_thread_;
  int metrics_port_ = 0;
  std::unique_ptr<metadata::HttpMetadataServer> metadata_server_;
  std::unique_ptr<FastRpcServer> fast_rpc_server_;
  absl::Notification stop_ticking_;
  std::thread tick_thread_;
  bool stopped_ = false;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_SERVER_H_
