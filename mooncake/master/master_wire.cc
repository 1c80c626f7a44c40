#include "mooncake/master/master_wire.h"

#include <string>

#include "mooncake/common/error_code.h"

namespace mooncake {

void EncodeObjectReplicas(const std::vector<ObjectReplicas>& objects, WireWriter& w) {
  w.U32(static_cast<uint32_t>(objects.size()));
  for (const ObjectReplicas& o : objects) {
    w.I32(static_cast<int32_t>(o.error));
    w.U64(o.size);
    w.U64(o.put_id);
    w.U32(static_cast<uint32_t>(o.replicas.size()));
    for (const ReplicaDesc& r : o.replicas) {
      w.Str(r.segment_name);
      w.U64(r.address);
      w.U64(r.size);
      w.U64(r.segment_instance);
      w.U8(r.disk ? 1 : 0);
    }
  }
}

bool DecodeObjectReplicas(WireReader& r, std::vector<ObjectReplicas>* out) {
  uint32_t n = r.Count(24);  // code + size + put id + replica count
  out->resize(n);
  for (ObjectReplicas& o : *out) {
    o.error = ErrorCodeFromInt(r.I32()).value_or(ErrorCode::INTERNAL_ERROR);
    o.size = r.U64();
    o.put_id = r.U64();
    uint32_t m = r.Count(29);  // name length + address + size + instance + disk
    o.replicas.resize(m);
    for (ReplicaDesc& d : o.replicas) {
      d.segment_name = std::string(r.Str());
      d.address = r.U64();
      d.size = r.U64();
      d.segment_instance = r.U64();
      d.disk = r.U8() != 0;
    }
    if (!r.ok()) return false;
  }
  return r.ok();
}

void EncodeReplicateConfig(const ReplicateConfig& config, WireWriter& w) {
  w.I32(config.replica_num);
  w.U8(config.with_soft_pin);
  w.U8(config.with_hard_pin);
  w.U32(static_cast<uint32_t>(config.preferred_segments.size()));
  for (const std::string& p : config.preferred_segments) w.Str(p);
}

ReplicateConfig DecodeReplicateConfig(WireReader& r) {
  ReplicateConfig config;
  config.replica_num = r.I32();
  config.with_soft_pin = r.U8() != 0;
  config.with_hard_pin = r.U8() != 0;
  uint32_t m = r.Count(4);
  for (uint32_t i = 0; i < m && r.ok(); ++i) config.preferred_segments.emplace_back(r.Str());
  return config;
}

}  // namespace mooncake
