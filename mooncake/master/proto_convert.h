// Conversions between master_types.h values and their mooncake/proto/master.proto messages, shared
// by the gRPC adapter (server side) and GrpcMasterClient. Conversions are total: a value from the
// wire that our types cannot hold (an unknown error code, a negative replica_num) maps to one that
// the receiver rejects or reports, never to undefined behaviour.
#ifndef MOONCAKE_MASTER_PROTO_CONVERT_H_
#define MOONCAKE_MASTER_PROTO_CONVERT_H_

#include <cstdint>

#include "mooncake/common/error_code.h"
#include "mooncake/master/master_types.h"
#include "mooncake/proto/master.pb.h"

namespace mooncake {

// ErrorCodeFromWire maps a wire error code to ErrorCode; unknown values become INTERNAL_ERROR.
ErrorCode ErrorCodeFromWire(int32_t code);
inline int32_t ErrorCodeToWire(ErrorCode code) { return static_cast<int32_t>(code); }

void ToProto(const ClientId& in, proto::ClientId* out);
ClientId FromProto(const proto::ClientId& in);

void ToProto(const SegmentDesc& in, proto::Segment* out);
SegmentDesc FromProto(const proto::Segment& in);

void ToProto(const ReplicaDesc& in, proto::Replica* out);
ReplicaDesc FromProto(const proto::Replica& in);

void ToProto(const DiskObjectRef& in, proto::DiskObject* out);
DiskObjectRef FromProto(const proto::DiskObject& in);

// replica_num 0 (proto3's default) means 1.
void ToProto(const ReplicateConfig& in, proto::ReplicateConfig* out);
ReplicateConfig FromProto(const proto::ReplicateConfig& in);

void ToProto(const ObjectReplicas& in, proto::ObjectReplicas* out);
ObjectReplicas FromProto(const proto::ObjectReplicas& in);

void ToProto(const SegmentStatus& in, proto::SegmentStatus* out);
SegmentStatus FromProto(const proto::SegmentStatus& in);

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_PROTO_CONVERT_H_
