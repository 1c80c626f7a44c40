// GrpcMasterClient: MasterClient over gRPC to a mooncake_master. Every call carries a deadline, so
// a dead or hung master yields RPC_FAIL (unreachable) or RPC_TIMEOUT (deadline exceeded) promptly
// instead of blocking; calls fail fast while the master is unreachable. A background thread keeps
// the channel connecting (backoff 100 ms .. 1 s), so calls succeed again within about a second of
// the master coming back. (gRPC 1.51 otherwise only notices a completed reconnect when a call is in
// flight or its 5 s backup poller runs.) Thread-safe: one client may be shared by many threads.
//
//   GrpcMasterClientOptions options;
//   options.address = "127.0.0.1:50051";
//   auto master = GrpcMasterClient::Create(options);   // absl::StatusOr<std::unique_ptr<...>>
//   if (!master.ok()) return master.status();
//   auto hb = (*master)->Heartbeat(my_id);             // RPC_FAIL while the master is down
#ifndef MOONCAKE_MASTER_GRPC_MASTER_CLIENT_H_
#define MOONCAKE_MASTER_GRPC_MASTER_CLIENT_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "mooncake/master/fast_rpc.h"
#include "mooncake/master/master_client.h"
#include "mooncake/proto/master.grpc.pb.h"

namespace mooncake {

struct GrpcMasterClientOptions {
  // "host:port" of mooncake_master (MOONCAKE_MASTER).
  std::string address;
  // Deadline of each call.
  absl::Duration rpc_timeout = absl::Seconds(5);
  // Use the master's fast RPC port (advertised in heartbeats) for the hot per-key calls.
  bool use_fast_rpc = true;
  // The fast RPC port to use on the master's host, instead of the advertised one (a proxy or a
  // port mapping in between); 0 = the advertised one.
  int fast_rpc_port = 0;
  // Presented with every call, gRPC and fast RPC (MC_AUTH_TOKEN); "" = none.
  std::string auth_token;
};

class GrpcMasterClient final : public MasterClient {
 public:
  // Create checks the options (a non-empty host:port, a positive timeout) and opens a channel; it
  // does not wait for the master, so it succeeds while the master is down.
  static absl::StatusOr<std::unique_ptr<GrpcMasterClient>> Create(
      const GrpcMasterClientOptions& options);

  ~GrpcMasterClient() override;

  const std::string& address() const { return options_.address; }

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
  GrpcMasterClient(const GrpcMasterClientOptions& options, std::shared_ptr<grpc::Channel> channel);

  // Drives the channel's connection attempts until the client is destroyed.
  void WatchConnectivity();

  // UseFastRpc switches the hot calls to the master's fast RPC port (0 turns it off).
  void UseFastRpc(int port);
  std::shared_ptr<FastRpcClient> Fast();

  // Context with this call's deadline.
  void Prepare(grpc::ClientContext* context) const;
  // RPC_TIMEOUT / RPC_FAIL for a failed call, naming the method and the master.
  absl::Status RpcError(const grpc::Status& status, const char* method) const;
  absl::StatusOr<std::vector<ErrorCode>> KeyCodes(const grpc::Status& status,
                                                  const proto::BatchKeysResponse& resp,
                                                  size_t num_keys, const char* method) const;

  const GrpcMasterClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<proto::MasterService::Stub> stub_;
  absl::Mutex fast_mu_;
  std::shared_ptr<FastRpcClient> fast_ ABSL_GUARDED_BY(fast_mu_);
  int fast_port_ ABSL_GUARDED_BY(fast_mu_) = 0;
  absl::Notification stop_watching_;
  std::thread watcher_;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_GRPC_MASTER_CLIENT_H_
