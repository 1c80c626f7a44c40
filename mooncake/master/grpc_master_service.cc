#include "mooncake/master/grpc_master_service.h"

#include <string>
#include <vector>

#include "mooncake/common/auth_token.h"
#include "mooncake/master/proto_convert.h"

namespace mooncake {
namespace {

// Views of the request's keys; the request outlives the call.
std::vector<absl::string_view> Views(const google::protobuf::RepeatedPtrField<std::string>& keys) {
  return std::vector<absl::string_view>(keys.begin(), keys.end());
}

template <typename Response>
grpc::Status Reject(const absl::Status& status, Response* resp) {
  resp->set_error_code(ErrorCodeToWire(ToErrorCode(status)));
  resp->set_error_message(std::string(status.message()));
  return grpc::Status::OK;
}

grpc::Status Answer(const absl::Status& status, proto::StatusResponse* resp) {
  resp->set_error_code(ErrorCodeToWire(ToErrorCode(status)));
  if (!status.ok()) resp->set_message(std::string(status.message()));
  return grpc::Status::OK;
}

grpc::Status Codes(const absl::StatusOr<std::vector<ErrorCode>>& result,
                   proto::BatchKeysResponse* resp) {
  if (!result.ok()) return Reject(result.status(), resp);
  resp->mutable_key_error_codes()->Reserve(static_cast<int>(result->size()));
  for (ErrorCode code : *result) resp->add_key_error_codes(ErrorCodeToWire(code));
  return grpc::Status::OK;
}

}  // namespace

absl::Status GrpcMasterService::Admit(grpc::ServerContext* context) {
  if (!auth_token_.empty()) {
    const auto& metadata = context->client_metadata();
    auto it = metadata.find(kAuthHeader);
    const absl::string_view given = it == metadata.end()
                                        ? absl::string_view()
                                        : absl::string_view(it->second.data(), it->second.size());
    if (!AuthTokenMatches(auth_token_, given)) {
      auth_refusals_.fetch_add(1);
      return AuthRefused("the master's gRPC port");
    }
  }
  return gate_ == nullptr ? absl::OkStatus() : gate_->Admit();
}

grpc::Status GrpcMasterService::BatchExistKey(grpc::ServerContext* context,
                                              const proto::BatchExistKeyRequest* req,
                                              proto::BatchExistKeyResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  auto result = service_->BatchExistKey(Views(req->keys()));
  if (!result.ok()) return Reject(result.status(), resp);
  resp->mutable_key_error_codes()->Reserve(static_cast<int>(result->size()));
  for (ErrorCode code : *result) resp->add_key_error_codes(ErrorCodeToWire(code));
  return grpc::Status::OK;
}

grpc::Status GrpcMasterService::BatchGetReplicaList(grpc::ServerContext* context,
                                                    const proto::BatchGetReplicaListRequest* req,
                                                    proto::BatchGetReplicaListResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  auto result = service_->BatchGetReplicaList(Views(req->keys()));
  if (!result.ok()) return Reject(result.status(), resp);
  resp->set_lease_ttl_ms(static_cast<uint64_t>(absl::ToInt64Milliseconds(result->lease_ttl)));
  resp->mutable_results()->Reserve(static_cast<int>(result->objects.size()));
  for (const ObjectReplicas& o : result->objects) ToProto(o, resp->add_results());
  return grpc::Status::OK;
}

grpc::Status GrpcMasterService::BatchPutStart(grpc::ServerContext* context,
                                              const proto::BatchPutStartRequest* req,
                                              proto::BatchPutStartResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  const ReplicateConfig config = FromProto(req->config());
  auto result = service_->BatchPutStart(
      Views(req->keys()), absl::MakeConstSpan(req->sizes().data(), req->sizes_size()), config,
      absl::MakeConstSpan(req->put_ids().data(), req->put_ids_size()));
  if (!result.ok()) return Reject(result.status(), resp);
  if (absl::Status settled = Settle(); !settled.ok()) return Reject(settled, resp);
  resp->mutable_results()->Reserve(static_cast<int>(result->size()));
  for (const ObjectReplicas& o : *result) ToProto(o, resp->add_results());
  return grpc::Status::OK;
}

grpc::Status GrpcMasterService::BatchPutEnd(grpc::ServerContext* context,
                                            const proto::BatchKeysRequest* req,
                                            proto::BatchKeysResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  return Codes(
      Settled(service_->BatchPutEnd(
          Views(req->keys()), absl::MakeConstSpan(req->put_ids().data(), req->put_ids().size()))),
      resp);
}

grpc::Status GrpcMasterService::BatchPutRevoke(grpc::ServerContext* context,
                                               const proto::BatchKeysRequest* req,
                                               proto::BatchKeysResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  return Codes(
      Settled(service_->BatchPutRevoke(
          Views(req->keys()), absl::MakeConstSpan(req->put_ids().data(), req->put_ids().size()),
          req->quarantine())),
      resp);
}

grpc::Status GrpcMasterService::BatchRemove(grpc::ServerContext* context,
                                            const proto::BatchRemoveRequest* req,
                                            proto::BatchKeysResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  return Codes(Settled(service_->BatchRemove(Views(req->keys()), req->force())), resp);
}

grpc::Status GrpcMasterService::RemoveByRegex(grpc::ServerContext* context,
                                              const proto::RemoveByRegexRequest* req,
                                              proto::RemoveCountResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  auto result = Settled(service_->RemoveByRegex(req->regex(), req->force()));
  if (!result.ok()) return Reject(result.status(), resp);
  resp->set_removed(*result);
  return grpc::Status::OK;
}

grpc::Status GrpcMasterService::RemoveAll(grpc::ServerContext* context,
                                          const proto::RemoveAllRequest* req,
                                          proto::RemoveCountResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  auto result = Settled(service_->RemoveAll(req->force()));
  if (!result.ok()) return Reject(result.status(), resp);
  resp->set_removed(*result);
  return grpc::Status::OK;
}

grpc::Status GrpcMasterService::MountSegment(grpc::ServerContext* context,
                                             const proto::MountSegmentRequest* req,
                                             proto::StatusResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Answer(admitted, resp);
  return Answer(
      SettledStatus(service_->MountSegment(FromProto(req->client_id()), FromProto(req->segment()))),
      resp);
}

grpc::Status GrpcMasterService::RemountSegment(grpc::ServerContext* context,
                                               const proto::RemountSegmentRequest* req,
                                               proto::StatusResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Answer(admitted, resp);
  std::vector<SegmentDesc> segments;
  segments.reserve(req->segments_size());
  for (const proto::Segment& s : req->segments()) segments.push_back(FromProto(s));
  return Answer(SettledStatus(service_->RemountSegment(FromProto(req->client_id()), segments)),
                resp);
}

grpc::Status GrpcMasterService::UnmountSegment(grpc::ServerContext* context,
                                               const proto::UnmountSegmentRequest* req,
                                               proto::StatusResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Answer(admitted, resp);
  return Answer(SettledStatus(service_->UnmountSegment(FromProto(req->client_id()), req->name(),
                                                       req->base())),
                resp);
}

grpc::Status GrpcMasterService::Heartbeat(grpc::ServerContext* context,
                                          const proto::HeartbeatRequest* req,
                                          proto::HeartbeatResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  auto result = service_->Heartbeat(FromProto(req->client_id()));
  if (!result.ok()) return Reject(result.status(), resp);
  resp->set_need_remount(result->need_remount);
  resp->set_client_ttl_ms(static_cast<uint64_t>(absl::ToInt64Milliseconds(result->client_ttl)));
  resp->set_fast_rpc_port(static_cast<uint32_t>(fast_rpc_port_.load()));
  return grpc::Status::OK;
}

grpc::Status GrpcMasterService::ListSegments(grpc::ServerContext* context,
                                             const proto::ListSegmentsRequest*,
                                             proto::ListSegmentsResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  for (const SegmentStatus& s : service_->ListSegments()) ToProto(s, resp->add_segments());
  return grpc::Status::OK;
}

grpc::Status GrpcMasterService::OffloadSync(grpc::ServerContext* context,
                                            const proto::OffloadSyncRequest* req,
                                            proto::OffloadSyncResponse* resp) {
  if (absl::Status admitted = Admit(context); !admitted.ok()) return Reject(admitted, resp);
  OffloadSyncRequest request;
  for (const proto::DiskObject& o : req->stored()) request.stored.push_back(FromProto(o));
  for (const proto::DiskObject& o : req->recovered()) request.recovered.push_back(FromProto(o));
  for (const proto::DiskObject& o : req->lost()) request.lost.push_back(FromProto(o));
  request.max_tasks = req->max_tasks();
  auto result = service_->OffloadSync(FromProto(req->client_id()), request);
  if (!result.ok()) return Reject(result.status(), resp);
  for (const OffloadTask& t : result->tasks) {
    proto::OffloadTask* out = resp->add_tasks();
    out->set_key(t.key);
    out->set_put_id(t.put_id);
    out->set_size(t.size);
    out->set_address(t.address);
  }
  for (const DiskObjectRef& o : result->drop) ToProto(o, resp->add_drop());
  return grpc::Status::OK;
}

}  // namespace mooncake
