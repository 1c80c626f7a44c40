// The binary encoding of master types shared by the framed protocols (the master's fast RPC,
// mooncake/master/fast_rpc.h, and the standalone client protocol,
// mooncake/standalone/standalone_protocol.h). Decoders never read past their input; they return
// false (or leave the reader failed) on malformed bytes.
#ifndef MOONCAKE_MASTER_MASTER_WIRE_H_
#define MOONCAKE_MASTER_MASTER_WIRE_H_

#include <vector>

#include "mooncake/master/master_types.h"
#include "mooncake/net/wire.h"

namespace mooncake {

// Per object: code, size, put id, then each replica (segment, address, size, instance, disk).
void EncodeObjectReplicas(const std::vector<ObjectReplicas>& objects, WireWriter& w);
bool DecodeObjectReplicas(WireReader& r, std::vector<ObjectReplicas>* out);

// replica_num, the two pins, then the preferred segments.
void EncodeReplicateConfig(const ReplicateConfig& config, WireWriter& w);
ReplicateConfig DecodeReplicateConfig(WireReader& r);

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_WIRE_H_
