#include "mooncake/master/local_master_client.h"

#include <string>
#include <vector>

namespace mooncake {
namespace {

std::vector<absl::string_view> Views(absl::Span<const std::string> keys) {
  return std::vector<absl::string_view>(keys.begin(), keys.end());
}

}  // namespace

absl::StatusOr<std::vector<ErrorCode>> LocalMasterClient::BatchExistKey(
    absl::Span<const std::string> keys) {
  return service_->BatchExistKey(Views(keys));
}

absl::StatusOr<ReplicaListResult> LocalMasterClient::BatchGetReplicaList(
    absl::Span<const std::string> keys) {
  return service_->BatchGetReplicaList(Views(keys));
}

absl::StatusOr<std::vector<ObjectReplicas>> LocalMasterClient::BatchPutStart(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> sizes,
    const ReplicateConfig& config, absl::Span<const uint64_t> put_ids) {
  return service_->BatchPutStart(Views(keys), sizes, config, put_ids);
}

absl::StatusOr<std::vector<ErrorCode>> LocalMasterClient::BatchPutEnd(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids) {
  return service_->BatchPutEnd(Views(keys), put_ids);
}

absl::StatusOr<std::vector<ErrorCode>> LocalMasterClient::BatchPutRevoke(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> put_ids, bool quarantine) {
  return service_->BatchPutRevoke(Views(keys), put_ids, quarantine);
}

absl::StatusOr<std::vector<ErrorCode>> LocalMasterClient::BatchRemove(
    absl::Span<const std::string> keys, bool force) {
  return service_->BatchRemove(Views(keys), force);
}

absl::StatusOr<uint64_t> LocalMasterClient::RemoveByRegex(const std::string& regex, bool force) {
  return service_->RemoveByRegex(regex, force);
}

absl::StatusOr<uint64_t> LocalMasterClient::RemoveAll(bool force) {
  return service_->RemoveAll(force);
}

absl::Status LocalMasterClient::MountSegment(const ClientId& client, const SegmentDesc& segment) {
  return service_->MountSegment(client, segment);
}

absl::Status LocalMasterClient::RemountSegment(const ClientId& client,
                                               absl::Span<const SegmentDesc> segments) {
  return service_->RemountSegment(client, segments);
}

absl::Status LocalMasterClient::UnmountSegment(const ClientId& client, const std::string& name,
                                               uint64_t base) {
  return service_->UnmountSegment(client, name, base);
}

absl::StatusOr<HeartbeatResult> LocalMasterClient::Heartbeat(const ClientId& client) {
  return service_->Heartbeat(client);
}

absl::StatusOr<std::vector<SegmentStatus>> LocalMasterClient::ListSegments() {
  return service_->ListSegments();
}

absl::StatusOr<OffloadSyncResult> LocalMasterClient::OffloadSync(
    const ClientId& client, const OffloadSyncRequest& request) {
  return service_->OffloadSync(client, request);
}

}  // namespace mooncake
