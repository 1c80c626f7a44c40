#include "mooncake/master/ha/proto_journal.h"

namespace mooncake::ha {

void ObjectToProto(absl::string_view key, uint64_t put_id, uint64_t size, uint8_t flags,
                   absl::Span<const MasterSnapshot::Replica> replicas, proto::ha::Object* o) {
  o->set_key(key.data(), key.size());
  o->set_put_id(put_id);
  o->set_size(size);
  o->set_flags(flags);
  for (const MasterSnapshot::Replica& r : replicas) {
    proto::ha::Replica* p = o->add_replicas();
    p->set_segment_id(r.segment_id);
    p->set_address(r.address);
  }
}

void SegmentToProto(uint32_t id, const ClientId& owner, const SegmentDesc& desc,
                    proto::ha::Segment* s) {
  s->set_id(id);
  s->set_owner_high(owner.high);
  s->set_owner_low(owner.low);
  s->set_name(desc.name);
  s->set_base(desc.base);
  s->set_size(desc.size);
  s->set_instance(desc.instance);
}

void ReservationToProto(const MasterSnapshot::Reservation& r, proto::ha::Reservation* p) {
  p->set_segment_id(r.segment_id);
  p->set_address(r.address);
  p->set_size(r.size);
  p->set_remaining_ns(r.remaining_ns);
}

proto::ha::SnapshotPart SnapshotToProto(const MasterSnapshot& snapshot, uint64_t seq) {
  proto::ha::SnapshotPart part;
  for (const MasterSnapshot::Segment& s : snapshot.segments) {
    SegmentToProto(s.id, s.owner, s.desc, part.add_segments());
  }
  for (const MasterSnapshot::Object& o : snapshot.objects) {
    ObjectToProto(o.key, o.put_id, o.size, o.flags, o.replicas, part.add_objects());
  }
  for (const MasterSnapshot::Reservation& r : snapshot.reservations) {
    ReservationToProto(r, part.add_reservations());
  }
  part.set_last(true);
  part.set_seq(seq);
  return part;
}

void ProtoJournal::ObjectStarted(absl::string_view key, uint64_t put_id, uint64_t size,
                                 uint8_t flags,
                                 absl::Span<const MasterSnapshot::Replica> replicas) {
  proto::ha::Op op;
  ObjectToProto(key, put_id, size, flags, replicas, op.mutable_started());
  Append(&op);
}

void ProtoJournal::ObjectCompleted(absl::string_view key, uint64_t put_id) {
  proto::ha::Op op;
  op.mutable_completed()->set_key(key.data(), key.size());
  op.mutable_completed()->set_put_id(put_id);
  Append(&op);
}

void ProtoJournal::ObjectDropped(absl::string_view key, uint64_t put_id, int64_t reserve_ns) {
  proto::ha::Op op;
  op.mutable_dropped()->set_key(key.data(), key.size());
  op.mutable_dropped()->set_put_id(put_id);
  op.mutable_dropped()->set_reserve_ns(reserve_ns);
  Append(&op);
}

void ProtoJournal::SegmentMounted(uint32_t segment_id, const ClientId& owner,
                                  const SegmentDesc& desc) {
  proto::ha::Op op;
  SegmentToProto(segment_id, owner, desc, op.mutable_mounted());
  Append(&op);
}

void ProtoJournal::SegmentUnmounted(uint32_t segment_id) {
  proto::ha::Op op;
  op.set_unmounted(segment_id);
  Append(&op);
}

}  // namespace mooncake::ha
