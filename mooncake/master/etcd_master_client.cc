#include "mooncake/master/etcd_master_client.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "mooncake/common/logging.h"

namespace mooncake {
namespace {

bool Refused(const absl::Status& s) {
  return ToErrorCode(s) == ErrorCode::UNAVAILABLE_IN_CURRENT_STATUS;
}

// The leader may be gone: a transport failure or a deadline.
bool LeaderMayBeGone(const absl::Status& s) {
  const ErrorCode code = ToErrorCode(s);
  return code == ErrorCode::RPC_FAIL || code == ErrorCode::RPC_TIMEOUT;
}

template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& r) {
  return r.status();
}
const absl::Status& StatusOf(const absl::Status& s) { return s; }

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdMasterClient>> EtcdMasterClient::Create(
    const EtcdMasterClientOptions& options) {
  absl::string_view rest = options.address;
  if (!absl::ConsumePrefix(&rest, "etcd://")) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("master address '", options.address, "' is not etcd://..."));
  }
  std::vector<std::string> endpoints;
  for (absl::string_view e : absl::StrSplit(rest, absl::ByAnyChar(";,"))) {
    e = absl::StripAsciiWhitespace(e);
    if (!e.empty()) endpoints.emplace_back(e);
  }
  std::string cluster_id = options.cluster_id;
  if (cluster_id.empty()) {
    const char* env = std::getenv("MOONCAKE_CLUSTER_ID");
    cluster_id = env != nullptr && *env != '\0' ? env : "mooncake_cluster";
  }
  metadata::EtcdMetadataClientOptions etcd_options;
  etcd_options.connect_timeout = absl::Milliseconds(500);
  etcd_options.io_timeout = absl::Milliseconds(500);
  auto etcd = ha::EtcdHaClient::Create(endpoints, etcd_options);
  if (!etcd.ok()) return MakeError(ErrorCode::INVALID_PARAMS, etcd.status().message());
  return std::unique_ptr<EtcdMasterClient>(
      new EtcdMasterClient(options, std::move(cluster_id), *std::move(etcd)));
}

EtcdMasterClient::EtcdMasterClient(const EtcdMasterClientOptions& options, std::string cluster_id,
                                   std::unique_ptr<ha::EtcdHaClient> etcd)
    : options_(options),
      key_(absl::StrCat("mooncake-store/", cluster_id, "/master_view")),
      etcd_(std::move(etcd)) {}

std::string EtcdMasterClient::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

std::shared_ptr<GrpcMasterClient> EtcdMasterClient::Leader(absl::Status* error) {
  {
    absl::MutexLock lock(&mu_);
    if (current_ != nullptr) return current_;
  }
  auto view = etcd_->Get(key_);
  if (!view.ok()) {
    *error = MakeError(ErrorCode::RPC_FAIL,
                       absl::StrCat("cannot read the master leader from ", options_.address, ": ",
                                    view.status().message()));
    return nullptr;
  }
  if (!view->has_value()) {
    *error = MakeError(ErrorCode::RPC_FAIL, absl::StrCat("no master leads (", key_,
                                                         " is not set in ", options_.address, ")"));
    return nullptr;
  }
  GrpcMasterClientOptions o;
  o.address = (*view)->value;
  o.rpc_timeout = options_.rpc_timeout;
  o.auth_token = options_.auth_token;
  auto client = GrpcMasterClient::Create(o);
  if (!client.ok()) {
    *error = MakeError(ErrorCode::RPC_FAIL, absl::StrCat("leader address '", o.address,
                                                         "' in etcd: ", client.status().message()));
    return nullptr;
  }
  absl::MutexLock lock(&mu_);
  if (current_ == nullptr || current_->address() != o.address) {
    if (leader_ != o.address) MC_LOG(INFO) << "master leader is " << o.address;
    current_ = std::shared_ptr<GrpcMasterClient>(std::move(*client));
    leader_ = o.address;
  }
  return current_;
}

void EtcdMasterClient::Forget(const std::shared_ptr<GrpcMasterClient>& stale) {
  absl::MutexLock lock(&mu_);
  if (current_ == stale) current_.reset();
}

template <typename Call>
auto EtcdMasterClient::Run(bool safe, Call call)
    -> decltype(call(std::declval<GrpcMasterClient&>())) {
  const absl::Time deadline = absl::Now() + options_.failover_timeout;
  absl::Duration backoff = absl::Milliseconds(20);
  absl::Status last;
  for (;;) {
    std::shared_ptr<GrpcMasterClient> leader = Leader(&last);
    if (leader != nullptr) {
      auto result = call(*leader);
      const absl::Status& s = StatusOf(result);
      if (s.ok() || !(Refused(s) || LeaderMayBeGone(s))) return result;
      last = s;
      Forget(leader);
      if (!Refused(s) && !safe) return result;  // it may have run: the caller decides
    }
    if (absl::Now() + backoff > deadline) break;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(200));
  }
  return MakeError(
      ToErrorCode(last) == ErrorCode::OK ? ErrorCode::RPC_FAIL : ToErrorCode(last),
      absl::StrCat("no master leader answered within ",
                   absl::FormatDuration(options_.failover_timeout), ": ", last.message()));
}

absl::StatusOr<std::vector<ErrorCode>> EtcdMasterClient::BatchExistKey(
    absl::Span<const std::string> keys) {
  return Run(true, [&](GrpcMasterClient& m) { return m.BatchExistKey(keys); });
}

absl::StatusOr<ReplicaListResult> EtcdMasterClient::BatchGetReplicaList(
    absl::Span<const std::string> keys) {
  return Run(true, [&](GrpcMasterClient& m) { return m.BatchGetReplicaList(keys); });
}

absl::StatusOr<std::vector<ObjectReplicas>> EtcdMasterClient::BatchPutStart(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> sizes,
    const ReplicateConfig& config, absl::Span<const uint64_t> put_ids) {
  return Run(!put_ids.empty(),
             [&](GrpcMasterClient& m) { return m.BatchPutStart(keys, sizes, config, put_ids); });
}

absl::StatusOr<std::vector<ErrorCode>> EtcdMasterClient::BatchPutEnd(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids) {
  return Run(!put_ids.empty(), [&](GrpcMasterClient& m) { return m.BatchPutEnd(keys, put_ids); });
}

absl::StatusOr<std::vector<ErrorCode>> EtcdMasterClient::BatchPutRevoke(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids, bool quarantine) {
  return Run(!put_ids.empty(),
             [&](GrpcMasterClient& m) { return m.BatchPutRevoke(keys, put_ids, quarantine); });
}

absl::StatusOr<std::vector<ErrorCode>> EtcdMasterClient::BatchRemove(
    absl::Span<const std::string> keys, bool force) {
  return Run(false, [&](GrpcMasterClient& m) { return m.BatchRemove(keys, force); });
}

absl::StatusOr<uint64_t> EtcdMasterClient::RemoveByRegex(const std::string& regex, bool force) {
  return Run(false, [&](GrpcMasterClient& m) { return m.RemoveByRegex(regex, force); });
}

absl::StatusOr<uint64_t> EtcdMasterClient::RemoveAll(bool force) {
  return Run(false, [&](GrpcMasterClient& m) { return m.RemoveAll(force); });
}

absl::Status EtcdMasterClient::MountSegment(const ClientId& client, const SegmentDesc& segment) {
  return Run(true, [&](GrpcMasterClient& m) { return m.MountSegment(client, segment); });
}

absl::Status EtcdMasterClient::RemountSegment(const ClientId& client,
                                              absl::Span<const SegmentDesc> segments) {
  return Run(true, [&](GrpcMasterClient& m) { return m.RemountSegment(client, segments); });
}

absl::Status EtcdMasterClient::UnmountSegment(const ClientId& client, const std::string& name,
                                              uint64_t base) {
  return Run(true, [&](GrpcMasterClient& m) { return m.UnmountSegment(client, name, base); });
}

absl::StatusOr<HeartbeatResult> EtcdMasterClient::Heartbeat(const ClientId& client) {
  return Run(true, [&](GrpcMasterClient& m) { return m.Heartbeat(client); });
}

absl::StatusOr<std::vector<SegmentStatus>> EtcdMasterClient::ListSegments() {
  return Run(true, [&](GrpcMasterClient& m) { return m.ListSegments(); });
}

absl::StatusOr<OffloadSyncResult> EtcdMasterClient::OffloadSync(const ClientId& client,
                                                                const OffloadSyncRequest& request) {
  return Run(false, [&](GrpcMasterClient& m) { return m.OffloadSync(client, request); });
}

}  // namespace mooncake
