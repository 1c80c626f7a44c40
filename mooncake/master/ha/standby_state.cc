#include "mooncake/master/ha/standby_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"

namespace mooncake::ha {
namespace {

absl::Status OutOfStep(std::string what) {
  return MakeError(ErrorCode::INTERNAL_ERROR, absl::StrCat("replication out of step: ", what));
}

}  // namespace

void StandbyState::Reset() {
  segments_.clear();
  objects_.clear();
  reservations_.clear();
}

absl::Status StandbyState::AddSegment(const proto::ha::Segment& s) {
  if (segments_.contains(s.id())) return OutOfStep(absl::StrCat("segment id ", s.id(), " twice"));
  MasterSnapshot::Segment seg;
  seg.id = s.id();
  seg.owner = ClientId{s.owner_high(), s.owner_low()};
  seg.desc = SegmentDesc{s.name(), s.base(), s.size(), s.instance()};
  segments_.emplace(s.id(), std::move(seg));
  return absl::OkStatus();
}

absl::Status StandbyState::AddObject(const proto::ha::Object& o) {
  Object obj;
  obj.put_id = o.put_id();
  obj.size = o.size();
  obj.flags = static_cast<uint8_t>(o.flags());
  for (const proto::ha::Replica& r : o.replicas()) {
    if (!segments_.contains(r.segment_id())) {
      return OutOfStep(absl::StrCat("object on unknown segment ", r.segment_id()));
    }
    obj.replicas.push_back({r.segment_id(), r.address()});
  }
  // A started put replaces an abandoned one of the same key (the leader dropped it first).
  objects_[o.key()] = std::move(obj);
  return absl::OkStatus();
}

void StandbyState::Reserve(uint32_t segment_id, uint64_t address, uint64_t size,
                           int64_t remaining_ns) {
  if (remaining_ns <= 0 || !segments_.contains(segment_id)) return;
  reservations_.push_back({segment_id, address, size, clock_->NowNanos() + remaining_ns});
}

void StandbyState::Unmount(uint32_t segment_id) {
  segments_.erase(segment_id);
  for (auto it = objects_.begin(); it != objects_.end();) {
    std::vector<MasterSnapshot::Replica>& reps = it->second.replicas;
    reps.erase(std::remove_if(
                   reps.begin(), reps.end(),
                   [&](const MasterSnapshot::Replica& r) { return r.segment_id == segment_id; }),
               reps.end());
    if (reps.empty()) {
      objects_.erase(it++);
    } else {
      ++it;
    }
  }
  reservations_.erase(
      std::remove_if(reservations_.begin(), reservations_.end(),
                     [&](const Reservation& r) { return r.segment_id == segment_id; }),
      reservations_.end());
}

absl::Status StandbyState::ApplySnapshotPart(const proto::ha::SnapshotPart& part) {
  for (const proto::ha::Segment& s : part.segments()) {
    if (absl::Status st = AddSegment(s); !st.ok()) return st;
  }
  for (const proto::ha::Object& o : part.objects()) {
    if (absl::Status st = AddObject(o); !st.ok()) return st;
  }
  for (const proto::ha::Reservation& r : part.reservations()) {
    Reserve(r.segment_id(), r.address(), r.size(), r.remaining_ns());
  }
  return absl::OkStatus();
}

absl::Status StandbyState::ApplyOp(const proto::ha::Op& op) {
  switch (op.op_case()) {
    case proto::ha::Op::kStarted:
      return AddObject(op.started());
    case proto::ha::Op::kCompleted: {
      auto it = objects_.find(op.completed().key());
      // Gone already: its last segment was unmounted before the put ended (as on the leader).
      if (it != objects_.end() && it->second.put_id == op.completed().put_id()) {
        it->second.flags |= kObjectComplete;
      }
      return absl::OkStatus();
    }
    case proto::ha::Op::kDropped: {
      const proto::ha::Dropped& d = op.dropped();
      auto it = objects_.find(d.key());
      if (it == objects_.end() || it->second.put_id != d.put_id()) return absl::OkStatus();
      for (const MasterSnapshot::Replica& r : it->second.replicas) {
        Reserve(r.segment_id, r.address, it->second.size, d.reserve_ns());
      }
      objects_.erase(it);
      return absl::OkStatus();
    }
    case proto::ha::Op::kMounted:
      return AddSegment(op.mounted());
    case proto::ha::Op::kUnmounted:
      Unmount(op.unmounted());
      return absl::OkStatus();
    case proto::ha::Op::OP_NOT_SET:
      break;
  }
  return OutOfStep("empty record");
}

MasterSnapshot StandbyState::ToSnapshot() const {
  MasterSnapshot out;
  const int64_t now = clock_->NowNanos();
  out.segments.reserve(segments_.size());
  for (const auto& [id, seg] : segments_) out.segments.push_back(seg);
  std::sort(out.segments.begin(), out.segments.end(),
            [](const MasterSnapshot::Segment& a, const MasterSnapshot::Segment& b) {
              return a.id < b.id;
            });
  out.objects.reserve(objects_.size());
  for (const auto& [key, obj] : objects_) {
    out.objects.push_back({key, obj.put_id, obj.size, obj.flags, obj.replicas});
  }
  for (const Reservation& r : reservations_) {
    if (r.deadline_ns > now) {
      out.reservations.push_back({r.segment_id, r.address, r.size, r.deadline_ns - now});
    }
  }
  return out;
}

}  // namespace mooncake::ha
