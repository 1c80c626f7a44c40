#include <algorithm>

#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/master_service.h"
#include "mooncake/master/master_service_internal.h"

// MasterService: the durable state as a whole (master_journal.h), for high availability.
namespace mooncake {

MasterSnapshot MasterService::Snapshot(const std::function<void()>& at_cut) const
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // Every journal call happens under a shard lock or seg_mu_: holding all of them is an instant
  // between two changes.
  for (size_t s = 0; s < kNumShards; ++s) shards_[s].mu.Lock();
  seg_mu_.ReaderLock();
  MasterSnapshot out;
  const int64_t now = NowNanos();
  // A segment being unmounted is gone already for the journal (SegmentUnmounted was sent).
  auto live = [&](uint32_t id) {
    auto it = segments_.find(id);
    return it != segments_.end() && !it->second->unmounting;
  };
  for (const auto& [id, seg] : segments_) {
    if (!seg->unmounting) out.segments.push_back({id, seg->owner, seg->desc});
  }
  std::sort(out.segments.begin(), out.segments.end(),
            [](const MasterSnapshot::Segment& a, const MasterSnapshot::Segment& b) {
              return a.id < b.id;
            });
  for (size_t s = 0; s < kNumShards; ++s) {
    for (const ObjectRecord* r : shards_[s].objects) {
      MasterSnapshot::Object o;
      for (int j = 0; j < r->num_replicas; ++j) {
        if (live(r->segment(j))) o.replicas.push_back({r->segment(j), r->address(j)});
      }
      if (o.replicas.empty()) continue;
      o.key = std::string(r->key());
      o.put_id = r->put_id;
      o.size = r->size;
      o.flags = r->flags & ~kObjectOffloading;  // soft state
      out.objects.push_back(std::move(o));
    }
  }
  for (const DiscardedBlock& b : discarded_) {
    if (live(b.segment_id) && b.release_ns > now) {
      out.reservations.push_back({b.segment_id, b.address, b.size, b.release_ns - now});
    }
  }
  if (at_cut) at_cut();
  seg_mu_.ReaderUnlock();
  for (size_t s = kNumShards; s > 0; --s) shards_[s - 1].mu.Unlock();
  return out;
}

absl::Status MasterService::Restore(const MasterSnapshot& snapshot) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  absl::MutexLock admin(&admin_mu_);
  absl::MutexLock eviction(&eviction_mu_);
  for (size_t s = 0; s < kNumShards; ++s) shards_[s].mu.Lock();
  seg_mu_.Lock();
  const int64_t now = NowNanos();
  const int64_t lease_end = now + LeaseTtlNanos();
  absl::Status status;
  auto fail = [&status](std::string message) {
    MC_LOG(ERROR) << "restore: " << message;
    if (status.ok()) status = MakeError(ErrorCode::INTERNAL_ERROR, message);
  };

  for (size_t s = 0; s < kNumShards; ++s) {
    for (ObjectRecord* r : shards_[s].objects) ObjectRecord::Delete(r);
    shards_[s].objects.clear();
    shards_[s].num_processing = 0;
  }
  segments_.clear();
  segment_ids_.clear();
  allocatable_names_.clear();
  allocatable_.clear();
  clients_.clear();
  discarded_.clear();
  discarded_bytes_ = 0;
  capacity_bytes_ = 0;
  allocated_bytes_ = 0;

  absl::flat_hash_map<uint32_t, uint32_t> ids;  // snapshot id -> our id
  for (const MasterSnapshot::Segment& in : snapshot.segments) {
    if (ids.contains(in.id) || !master_internal::ValidateSegmentDesc(in.desc).ok() ||
        segment_ids_.contains(std::make_pair(in.desc.name, in.desc.base))) {
      fail(absl::StrCat("segment ", in.desc.name, " (id ", in.id, ") is invalid or repeated"));
      continue;
    }
    const uint32_t id = next_segment_id_++;
    ids[in.id] = id;
    segments_.emplace(id, std::make_unique<Segment>(id, in.desc, in.owner));
    segment_ids_[std::make_pair(in.desc.name, in.desc.base)] = id;
    allocatable_.push_back(id);
    ++allocatable_names_[in.desc.name];
    capacity_bytes_ += in.desc.size;
    std::unique_ptr<Client>& c = clients_[in.owner];
    if (c == nullptr) c = std::make_unique<Client>();
    c->last_heartbeat_ns = now;
    c->segment_ids.push_back(id);
  }
  // Places one block of a snapshot segment; false (and, if `report`, an error) if it does not fit.
  auto reserve = [&](uint32_t snapshot_id, uint64_t address, uint64_t size, uint32_t* id_out,
                     bool report) {
    auto id = ids.find(snapshot_id);
    if (id == ids.end()) return false;
    Segment& seg = *segments_.at(id->second);
    if (address < seg.desc.base || !seg.allocator.Reserve(address - seg.desc.base, size).ok()) {
      if (report) {
        fail(absl::StrCat("block 0x", absl::Hex(address), " +", size, " does not fit segment ",
                          seg.desc.name));
      }
      return false;
    }
    allocated_bytes_ += SegmentAllocator::AlignedSize(size);
    *id_out = id->second;
    return true;
  };
  std::vector<AllocatedReplica> placed;
  for (const MasterSnapshot::Object& in : snapshot.objects) {
    if (!master_internal::ValidKey(in.key) || in.size == 0 || in.size > kMaxObjectSize ||
        in.replicas.size() > static_cast<size_t>(kMaxReplicaNum)) {
      fail(absl::StrCat("object '", in.key.substr(0, 64), "' is invalid"));
      continue;
    }
    Shard& shard = ShardFor(in.key);
    if (shard.objects.contains(absl::string_view(in.key))) {
      fail(absl::StrCat("object '", in.key.substr(0, 64), "' is repeated"));
      continue;
    }
    placed.clear();
    for (const MasterSnapshot::Replica& rep : in.replicas) {
      uint32_t id = 0;
      if (reserve(rep.segment_id, rep.address, in.size, &id, true))
        placed.push_back({id, rep.address});
    }
    if (placed.empty()) continue;
    const uint8_t flags = in.flags & (kObjectComplete | kObjectSoftPin | kObjectHardPin);
    ObjectRecord* r = ObjectRecord::New(in.key, in.size, flags, now, placed);
    r->put_id = in.put_id;
    if (r->complete()) {
      r->lease_expiry_ns = lease_end;
    } else {
      ++shard.num_processing;  // its writer has a full discard timeout from now to finish
    }
    shard.objects.insert(r);
  }
  // Objects first: a standby keeps reservations a little longer than the leader did (it counts
  // from when it applied them), so one may cover space the leader has since reused; that space
  // belongs to the object.
  for (const MasterSnapshot::Reservation& in : snapshot.reservations) {
    uint32_t id = 0;
    if (in.remaining_ns > 0 && reserve(in.segment_id, in.address, in.size, &id, false)) {
      discarded_.push_back(DiscardedBlock{id, in.address, in.size, now + in.remaining_ns});
      discarded_bytes_ += SegmentAllocator::AlignedSize(in.size);
    }
  }
  last_tick_ns_ = now;
  seg_mu_.Unlock();
  for (size_t s = kNumShards; s > 0; --s) shards_[s - 1].mu.Unlock();
  MC_LOG(INFO) << "restored " << snapshot.segments.size() << " segment(s), "
               << snapshot.objects.size() << " object(s), " << snapshot.reservations.size()
               << " reservation(s)";
  return status;
}

}  // namespace mooncake
