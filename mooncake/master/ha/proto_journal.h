// ProtoJournal: a MasterJournal that turns every change into one proto::ha::Op (ha.proto) and
// hands it to Append. The leader's ReplicationLog and the simulator's replicated master both
// build on it, so the records a standby applies are the same in production and in the VOPR.
// Also the conversions of snapshot parts to their wire form.
#ifndef MOONCAKE_MASTER_HA_PROTO_JOURNAL_H_
#define MOONCAKE_MASTER_HA_PROTO_JOURNAL_H_

#include "mooncake/master/master_journal.h"
#include "mooncake/proto/ha.pb.h"

namespace mooncake::ha {

class ProtoJournal : public MasterJournal {
 public:
  void ObjectStarted(absl::string_view key, uint64_t put_id, uint64_t size, uint8_t flags,
                     absl::Span<const MasterSnapshot::Replica> replicas) final;
  void ObjectCompleted(absl::string_view key, uint64_t put_id) final;
  void ObjectDropped(absl::string_view key, uint64_t put_id, int64_t reserve_ns) final;
  void SegmentMounted(uint32_t segment_id, const ClientId& owner, const SegmentDesc& desc) final;
  void SegmentUnmounted(uint32_t segment_id) final;

 protected:
  // Append receives each record, in order, under the service's locks (master_journal.h).
  virtual void Append(proto::ha::Op* op) = 0;
};

void ObjectToProto(absl::string_view key, uint64_t put_id, uint64_t size, uint8_t flags,
                   absl::Span<const MasterSnapshot::Replica> replicas, proto::ha::Object* out);
void SegmentToProto(uint32_t id, const ClientId& owner, const SegmentDesc& desc,
                    proto::ha::Segment* out);
void ReservationToProto(const MasterSnapshot::Reservation& r, proto::ha::Reservation* out);
// SnapshotToProto is the whole snapshot as one (last) part at sequence number `seq`.
proto::ha::SnapshotPart SnapshotToProto(const MasterSnapshot& snapshot, uint64_t seq);

}  // namespace mooncake::ha

#endif  // MOONCAKE_MASTER_HA_PROTO_JOURNAL_H_
