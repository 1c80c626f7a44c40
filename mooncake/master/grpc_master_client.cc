#include "mooncake/master/grpc_master_client.h"

#include <chrono>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/master/proto_convert.h"
#include "mooncake/net/host_port.h"

namespace mooncake {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

template <typename Response>
absl::Status Rejected(const Response& resp, const char* method) {
  if (resp.error_code() == 0) return absl::OkStatus();
  return MakeError(ErrorCodeFromWire(resp.error_code()),
                   absl::StrCat(method, ": ", resp.error_message()));
}

absl::Status Malformed(const char* method, size_t got, size_t want) {
  return MakeError(ErrorCode::RPC_FAIL,
                   absl::StrCat(method, ": master answered ", got, " results for ", want, " keys"));
}

template <typename Request>
void AddKeys(absl::Span<const std::string> keys, Request* req) {
  req->mutable_keys()->Reserve(static_cast<int>(keys.size()));
  for (const std::string& key : keys) req->add_keys(key);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcMasterClient>> GrpcMasterClient::Create(
    const GrpcMasterClientOptions& options) {
  if (absl::StatusOr<HostPort> hp = ParseHostPort(options.address); !hp.ok()) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("master address is not host:port: ", hp.status().message()));
  }
  if (options.rpc_timeout <= absl::ZeroDuration()) {
    return MakeError(ErrorCode::INVALID_PARAMS, "rpc_timeout must be > 0");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Reconnect quickly after a master restart; the default backoff grows to two minutes. (The
  // minimum connect timeout, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, stays at its 20 s default: the
  // per-call deadline already bounds every call.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A refused connection is retried only after re-resolving the name, which is otherwise
  // rate-limited to once per 30 s.
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 200);
  auto channel =
      grpc::CreateCustomChannel(options.address, grpc::InsecureChannelCredentials(), args);
  return std::unique_ptr<GrpcMasterClient>(new GrpcMasterClient(options, std::move(channel)));
}

GrpcMasterClient::GrpcMasterClient(const GrpcMasterClientOptions& options,
                                   std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      channel_(std::move(channel)),
      stub_(proto::MasterService::NewStub(channel_)),
      watcher_([this] { WatchConnectivity(); }) {}

GrpcMasterClient::~GrpcMasterClient() {
  stop_watching_.Notify();
  watcher_.join();
}

void GrpcMasterClient::WatchConnectivity() {
  // Waiting for a state change polls the channel, which completes pending connection attempts.
  while (!stop_watching_.HasBeenNotified()) {
    const grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
    channel_->WaitForStateChange(state,
                                 std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  }
}

void GrpcMasterClient::Prepare(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::nanoseconds(absl::ToInt64Nanoseconds(options_.rpc_timeout)));
  if (!options_.auth_token.empty()) context->AddMetadata(kAuthHeader, options_.auth_token);
}

absl::Status GrpcMasterClient::RpcError(const grpc::Status& status, const char* method) const {
  const ErrorCode code = status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                             ? ErrorCode::RPC_TIMEOUT
                             : ErrorCode::RPC_FAIL;
  return MakeError(code, absl::StrCat(method, " to master ", options_.address,
                                      " failed: ", status.error_message(), " (grpc code ",
                                      static_cast<int>(status.error_code()), ")"));
}

absl::StatusOr<std::vector<ErrorCode>> GrpcMasterClient::KeyCodes(
    const grpc::Status& status, const proto::BatchKeysResponse& resp, size_t num_keys,
    const char* method) const {
  if (!status.ok()) return RpcError(status, method);
  if (absl::Status s = Rejected(resp, method); !s.ok()) return s;
  if (static_cast<size_t>(resp.key_error_codes_size()) != num_keys) {
    return Malformed(method, resp.key_error_codes_size(), num_keys);
  }
  std::vector<ErrorCode> out;
  out.reserve(num_keys);
  for (int32_t code : resp.key_error_codes()) out.push_back(ErrorCodeFromWire(code));
  return out;
}

void GrpcMasterClient::UseFastRpc(int port) {
  if (!options_.use_fast_rpc) return;
  if (options_.fast_rpc_port > 0 && port > 0) port = options_.fast_rpc_port;
  absl::MutexLock lock(&fast_mu_);
  if (port == fast_port_) return;
  fast_port_ = port;
  fast_.reset();
  if (port <= 0) return;
  absl::StatusOr<HostPort> master = ParseHostPort(options_.address);  // checked by Create
  if (!master.ok()) return;
  fast_ = std::make_shared<FastRpcClient>(master->host, port, options_.rpc_timeout,
                                          options_.auth_token);
}

std::shared_ptr<FastRpcClient> GrpcMasterClient::Fast() {
  absl::MutexLock lock(&fast_mu_);
  return fast_;
}

// The fast path answers unless its transport failed; then the same call goes over gRPC. The
// fast request may have run before its transport failed, so only calls that are safe to repeat
// take this path: exist and get-replica-list (a lease is only extended), put-start with the
// client's put ids (a repeat finds its own puts), put-end and put-revoke by put id.
#define MC_TRY_FAST(call)                                                \
  if (std::shared_ptr<FastRpcClient> fast = Fast()) {                    \
    auto result = fast->call;                                            \
    if (!FastRpcClient::TransportFailed(result.status())) return result; \
  }

absl::StatusOr<std::vector<ErrorCode>> GrpcMasterClient::BatchExistKey(
    absl::Span<const std::string> keys) {
  MC_TRY_FAST(Codes(FastRpcOp::kExist, keys));
  proto::BatchExistKeyRequest req;
  AddKeys(keys, &req);
  proto::BatchExistKeyResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->BatchExistKey(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "BatchExistKey");
  if (absl::Status s = Rejected(resp, "BatchExistKey"); !s.ok()) return s;
  if (static_cast<size_t>(resp.key_error_codes_size()) != keys.size()) {
    return Malformed("BatchExistKey", resp.key_error_codes_size(), keys.size());
  }
  std::vector<ErrorCode> out;
  out.reserve(keys.size());
  for (int32_t code : resp.key_error_codes()) out.push_back(ErrorCodeFromWire(code));
  return out;
}

absl::StatusOr<ReplicaListResult> GrpcMasterClient::BatchGetReplicaList(
    absl::Span<const std::string> keys) {
  MC_TRY_FAST(GetReplicaList(keys));
  proto::BatchGetReplicaListRequest req;
  AddKeys(keys, &req);
  proto::BatchGetReplicaListResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->BatchGetReplicaList(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "BatchGetReplicaList");
  if (absl::Status s = Rejected(resp, "BatchGetReplicaList"); !s.ok()) return s;
  if (static_cast<size_t>(resp.results_size()) != keys.size()) {
    return Malformed("BatchGetReplicaList", resp.results_size(), keys.size());
  }
  ReplicaListResult out;
  out.lease_ttl = absl::Milliseconds(static_cast<int64_t>(resp.lease_ttl_ms()));
  out.objects.reserve(keys.size());
  for (const proto::ObjectReplicas& o : resp.results()) out.objects.push_back(FromProto(o));
  return out;
}

absl::StatusOr<std::vector<ObjectReplicas>> GrpcMasterClient::BatchPutStart(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> sizes,
    const ReplicateConfig& config, absl::Span<const uint64_t> put_ids) {
  if (!put_ids.empty()) {
    MC_TRY_FAST(PutStart(keys, sizes, config, put_ids));
  } else if (std::shared_ptr<FastRpcClient> fast = Fast()) {
    // Without put ids a repeat would find the first attempt's puts as another writer's: fall back
    // only when the request never left.
    auto result = fast->PutStart(keys, sizes, config, put_ids);
    if (!FastRpcClient::NotSent(result.status())) return result;
  }
  proto::BatchPutStartRequest req;
  AddKeys(keys, &req);
  req.mutable_sizes()->Add(sizes.begin(), sizes.end());
  req.mutable_put_ids()->Add(put_ids.begin(), put_ids.end());
  ToProto(config, req.mutable_config());
  proto::BatchPutStartResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->BatchPutStart(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "BatchPutStart");
  if (absl::Status s = Rejected(resp, "BatchPutStart"); !s.ok()) return s;
  if (static_cast<size_t>(resp.results_size()) != keys.size()) {
    return Malformed("BatchPutStart", resp.results_size(), keys.size());
  }
  std::vector<ObjectReplicas> out;
  out.reserve(keys.size());
  for (const proto::ObjectReplicas& o : resp.results()) out.push_back(FromProto(o));
  return out;
}

absl::StatusOr<std::vector<ErrorCode>> GrpcMasterClient::BatchPutEnd(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids) {
  MC_TRY_FAST(Codes(FastRpcOp::kPutEnd, keys, put_ids));
  proto::BatchKeysRequest req;
  AddKeys(keys, &req);
  req.mutable_put_ids()->Add(put_ids.begin(), put_ids.end());
  proto::BatchKeysResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->BatchPutEnd(&context, req, &resp);
  return KeyCodes(status, resp, keys.size(), "BatchPutEnd");
}

absl::StatusOr<std::vector<ErrorCode>> GrpcMasterClient::BatchPutRevoke(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids, bool quarantine) {
  MC_TRY_FAST(Codes(FastRpcOp::kPutRevoke, keys, put_ids, quarantine));
  proto::BatchKeysRequest req;
  AddKeys(keys, &req);
  req.mutable_put_ids()->Add(put_ids.begin(), put_ids.end());
  req.set_quarantine(quarantine);
  proto::BatchKeysResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->BatchPutRevoke(&context, req, &resp);
  return KeyCodes(status, resp, keys.size(), "BatchPutRevoke");
}

absl::StatusOr<std::vector<ErrorCode>> GrpcMasterClient::BatchRemove(
    absl::Span<const std::string> keys, bool force) {
  proto::BatchRemoveRequest req;
  AddKeys(keys, &req);
  req.set_force(force);
  proto::BatchKeysResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->BatchRemove(&context, req, &resp);
  return KeyCodes(status, resp, keys.size(), "BatchRemove");
}

absl::StatusOr<uint64_t> GrpcMasterClient::RemoveByRegex(const std::string& regex, bool force) {
  proto::RemoveByRegexRequest req;
  req.set_regex(regex);
  req.set_force(force);
  proto::RemoveCountResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->RemoveByRegex(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "RemoveByRegex");
  if (absl::Status s = Rejected(resp, "RemoveByRegex"); !s.ok()) return s;
  return resp.removed();
}

absl::StatusOr<uint64_t> GrpcMasterClient::RemoveAll(bool force) {
  proto::RemoveAllRequest req;
  req.set_force(force);
  proto::RemoveCountResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->RemoveAll(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "RemoveAll");
  if (absl::Status s = Rejected(resp, "RemoveAll"); !s.ok()) return s;
  return resp.removed();
}

namespace {

absl::Status FromStatusResponse(const proto::StatusResponse& resp, const char* method) {
  if (resp.error_code() == 0) return absl::OkStatus();
  return MakeError(ErrorCodeFromWire(resp.error_code()),
                   absl::StrCat(method, ": ", resp.message()));
}

}  // namespace

absl::Status GrpcMasterClient::MountSegment(const ClientId& client, const SegmentDesc& segment) {
  proto::MountSegmentRequest req;
  ToProto(client, req.mutable_client_id());
  ToProto(segment, req.mutable_segment());
  proto::StatusResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->MountSegment(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "MountSegment");
  return FromStatusResponse(resp, "MountSegment");
}

absl::Status GrpcMasterClient::RemountSegment(const ClientId& client,
                                              absl::Span<const SegmentDesc> segments) {
  proto::RemountSegmentRequest req;
  ToProto(client, req.mutable_client_id());
  for (const SegmentDesc& s : segments) ToProto(s, req.add_segments());
  proto::StatusResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->RemountSegment(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "RemountSegment");
  return FromStatusResponse(resp, "RemountSegment");
}

absl::Status GrpcMasterClient::UnmountSegment(const ClientId& client, const std::string& name,
                                              uint64_t base) {
  proto::UnmountSegmentRequest req;
  ToProto(client, req.mutable_client_id());
  req.set_name(name);
  req.set_base(base);
  proto::StatusResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->UnmountSegment(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "UnmountSegment");
  return FromStatusResponse(resp, "UnmountSegment");
}

absl::StatusOr<HeartbeatResult> GrpcMasterClient::Heartbeat(const ClientId& client) {
  proto::HeartbeatRequest req;
  ToProto(client, req.mutable_client_id());
  proto::HeartbeatResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->Heartbeat(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "Heartbeat");
  if (absl::Status s = Rejected(resp, "Heartbeat"); !s.ok()) return s;
  HeartbeatResult out;
  out.need_remount = resp.need_remount();
  out.client_ttl = absl::Milliseconds(static_cast<int64_t>(resp.client_ttl_ms()));
  out.fast_rpc_port = static_cast<int>(resp.fast_rpc_port());
  UseFastRpc(out.fast_rpc_port);
  return out;
}

absl::StatusOr<OffloadSyncResult> GrpcMasterClient::OffloadSync(const ClientId& client,
                                                                const OffloadSyncRequest& request) {
  proto::OffloadSyncRequest req;
  ToProto(client, req.mutable_client_id());
  for (const DiskObjectRef& o : request.stored) ToProto(o, req.add_stored());
  for (const DiskObjectRef& o : request.recovered) ToProto(o, req.add_recovered());
  for (const DiskObjectRef& o : request.lost) ToProto(o, req.add_lost());
  req.set_max_tasks(request.max_tasks);
  proto::OffloadSyncResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->OffloadSync(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "OffloadSync");
  if (absl::Status s = Rejected(resp, "OffloadSync"); !s.ok()) return s;
  OffloadSyncResult out;
  out.tasks.reserve(resp.tasks_size());
  for (const proto::OffloadTask& t : resp.tasks()) {
    out.tasks.push_back(OffloadTask{t.key(), t.put_id(), t.size(), t.address()});
  }
  for (const proto::DiskObject& o : resp.drop()) out.drop.push_back(FromProto(o));
  return out;
}

absl::StatusOr<std::vector<SegmentStatus>> GrpcMasterClient::ListSegments() {
  proto::ListSegmentsRequest req;
  proto::ListSegmentsResponse resp;
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Status status = stub_->ListSegments(&context, req, &resp);
  if (!status.ok()) return RpcError(status, "ListSegments");
  if (absl::Status s = Rejected(resp, "ListSegments"); !s.ok()) return s;
  std::vector<SegmentStatus> out;
  out.reserve(resp.segments_size());
  for (const proto::SegmentStatus& s : resp.segments()) out.push_back(FromProto(s));
  return out;
}

}  // namespace mooncake
