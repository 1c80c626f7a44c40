#include "mooncake/master/proto_convert.h"

#include <optional>

namespace mooncake {

ErrorCode ErrorCodeFromWire(int32_t code) {
  std::optional<ErrorCode> known = ErrorCodeFromInt(code);
  return known.has_value() ? *known : ErrorCode::INTERNAL_ERROR;
}

void ToProto(const ClientId& in, proto::ClientId* out) {
  out->set_high(in.high);
  out->set_low(in.low);
}

ClientId FromProto(const proto::ClientId& in) { return ClientId{in.high(), in.low()}; }

void ToProto(const SegmentDesc& in, proto::Segment* out) {
  out->set_name(in.name);
  out->set_base(in.base);
  out->set_size(in.size);
  out->set_instance(in.instance);
}

SegmentDesc FromProto(const proto::Segment& in) {
  return SegmentDesc{in.name(), in.base(), in.size(), in.instance()};
}

void ToProto(const ReplicaDesc& in, proto::Replica* out) {
  out->set_segment_name(in.segment_name);
  out->set_address(in.address);
  out->set_size(in.size);
  out->set_segment_instance(in.segment_instance);
  out->set_disk(in.disk);
}

ReplicaDesc FromProto(const proto::Replica& in) {
  return ReplicaDesc{in.segment_name(), in.address(), in.size(), in.segment_instance(), in.disk()};
}

void ToProto(const DiskObjectRef& in, proto::DiskObject* out) {
  out->set_key(in.key);
  out->set_put_id(in.put_id);
  out->set_size(in.size);
}

DiskObjectRef FromProto(const proto::DiskObject& in) {
  return DiskObjectRef{in.key(), in.put_id(), in.size()};
}

void ToProto(const ReplicateConfig& in, proto::ReplicateConfig* out) {
  out->set_replica_num(in.replica_num);
  out->set_with_soft_pin(in.with_soft_pin);
  out->set_with_hard_pin(in.with_hard_pin);
  for (const std::string& name : in.preferred_segments) out->add_preferred_segments(name);
}

ReplicateConfig FromProto(const proto::ReplicateConfig& in) {
  ReplicateConfig out;
  out.replica_num = in.replica_num() == 0 ? 1 : in.replica_num();
  out.with_soft_pin = in.with_soft_pin();
  out.with_hard_pin = in.with_hard_pin();
  out.preferred_segments.assign(in.preferred_segments().begin(), in.preferred_segments().end());
  return out;
}

void ToProto(const ObjectReplicas& in, proto::ObjectReplicas* out) {
  out->set_error_code(ErrorCodeToWire(in.error));
  if (in.error != ErrorCode::OK) return;
  out->set_size(in.size);
  out->set_put_id(in.put_id);
  out->mutable_replicas()->Reserve(static_cast<int>(in.replicas.size()));
  for (const ReplicaDesc& r : in.replicas) ToProto(r, out->add_replicas());
}

ObjectReplicas FromProto(const proto::ObjectReplicas& in) {
  ObjectReplicas out;
  out.error = ErrorCodeFromWire(in.error_code());
  if (out.error != ErrorCode::OK) return out;
  out.size = in.size();
  out.put_id = in.put_id();
  out.replicas.reserve(in.replicas_size());
  for (const proto::Replica& r : in.replicas()) out.replicas.push_back(FromProto(r));
  return out;
}

void ToProto(const SegmentStatus& in, proto::SegmentStatus* out) {
  ToProto(in.segment, out->mutable_segment());
  ToProto(in.owner, out->mutable_owner());
  out->set_allocated(in.allocated);
}

SegmentStatus FromProto(const proto::SegmentStatus& in) {
  return SegmentStatus{FromProto(in.segment()), FromProto(in.owner()), in.allocated()};
}

}  // namespace mooncake
