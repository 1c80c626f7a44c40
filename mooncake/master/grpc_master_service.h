// GrpcMasterService: the thin gRPC adapter in front of MasterService. Each handler converts the
// request, calls MasterService, and converts the answer; no logic lives here. A rejected request is
// answered with gRPC status OK and a non-zero `error_code` (+ `error_message`) in the reply, so the
// client always learns the exact Mooncake ErrorCode.
//
//   MasterService service(options, RealClock::Get());
//   GrpcMasterService adapter(&service);
//   grpc::ServerBuilder builder;
//   builder.RegisterService(&adapter);
#ifndef MOONCAKE_MASTER_GRPC_MASTER_SERVICE_H_
#define MOONCAKE_MASTER_GRPC_MASTER_SERVICE_H_

#include <atomic>

#include "grpcpp/grpcpp.h"
#include "mooncake/master/master_gate.h"
#include "mooncake/master/master_service.h"
#include "mooncake/proto/master.grpc.pb.h"

namespace mooncake {

class GrpcMasterService final : public proto::MasterService::Service {
 public:
  // `service` (and `gate`, if set: see master_gate.h) must outlive the adapter.
  // With a non-empty `auth_token` (MC_AUTH_TOKEN) every call must carry it in the
  // x-mooncake-auth metadata, or is answered INVALID_PARAMS.
  explicit GrpcMasterService(MasterService* service, MasterGate* gate = nullptr,
                             std::string auth_token = "")
      : service_(service), gate_(gate), auth_token_(std::move(auth_token)) {}

  grpc::Status BatchExistKey(grpc::ServerContext* context, const proto::BatchExistKeyRequest* req,
                             proto::BatchExistKeyResponse* resp) override;
  grpc::Status BatchGetReplicaList(grpc::ServerContext* context,
                                   const proto::BatchGetReplicaListRequest* req,
                                   proto::BatchGetReplicaListResponse* resp) override;
  grpc::Status BatchPutStart(grpc::ServerContext* context, const proto::BatchPutStartRequest* req,
                             proto::BatchPutStartResponse* resp) override;
  grpc::Status BatchPutEnd(grpc::ServerContext* context, const proto::BatchKeysRequest* req,
                           proto::BatchKeysResponse* resp) override;
  grpc::Status BatchPutRevoke(grpc::ServerContext* context, const proto::BatchKeysRequest* req,
                              proto::BatchKeysResponse* resp) override;
  grpc::Status BatchRemove(grpc::ServerContext* context, const proto::BatchRemoveRequest* req,
                           proto::BatchKeysResponse* resp) override;
  grpc::Status RemoveByRegex(grpc::ServerContext* context, const proto::RemoveByRegexRequest* req,
                             proto::RemoveCountResponse* resp) override;
  grpc::Status RemoveAll(grpc::ServerContext* context, const proto::RemoveAllRequest* req,
                         proto::RemoveCountResponse* resp) override;
  grpc::Status MountSegment(grpc::ServerContext* context, const proto::MountSegmentRequest* req,
                            proto::StatusResponse* resp) override;
  grpc::Status RemountSegment(grpc::ServerContext* context, const proto::RemountSegmentRequest* req,
                              proto::StatusResponse* resp) override;
  grpc::Status UnmountSegment(grpc::ServerContext* context, const proto::UnmountSegmentRequest* req,
                              proto::StatusResponse* resp) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const proto::HeartbeatRequest* req,
                         proto::HeartbeatResponse* resp) override;
  grpc::Status ListSegments(grpc::ServerContext* context, const proto::ListSegmentsRequest* req,
                            proto::ListSegmentsResponse* resp) override;
  grpc::Status OffloadSync(grpc::ServerContext* context, const proto::OffloadSyncRequest* req,
                           proto::OffloadSyncResponse* resp) override;

  // set_fast_rpc_port makes heartbeats advertise the fast RPC port to clients.
  void set_fast_rpc_port(int port) { fast_rpc_port_.store(port); }
  // Calls refused for a missing or wrong token.
  uint64_t auth_refusals() const { return auth_refusals_.load(); }

 private:
  // Admit checks the token, then lets the gate (if any) admit the call.
  absl::Status Admit(grpc::ServerContext* context);
  absl::Status Settle() { return gate_ == nullptr ? absl::OkStatus() : gate_->Settle(); }
  // A result that may have changed durable state, or the error if it did not settle.
  template <typename T>
  absl::StatusOr<T> Settled(absl::StatusOr<T> result) {
    if (absl::Status settled = Settle(); !settled.ok()) return settled;
    return result;
  }
  absl::Status SettledStatus(absl::Status status) {
    if (absl::Status settled = Settle(); !settled.ok()) return settled;
    return status;
  }

  MasterService* const service_;
  MasterGate* const gate_;
  const std::string auth_token_;
  std::atomic<int> fast_rpc_port_{0};
  std::atomic<uint64_t> auth_refusals_{0};
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_GRPC_MASTER_SERVICE_H_
