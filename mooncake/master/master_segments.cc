#include <algorithm>
#include <cmath>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/master_service.h"
#include "mooncake/master/master_service_internal.h"

// MasterService: segments and allocation, clients, and the periodic work of Tick.
namespace mooncake {

using master_internal::Add;
using master_internal::CheckBatchSize;
using master_internal::ValidateClient;
using master_internal::ValidateSegmentDesc;
using master_internal::ValidKey;

// ---------------------------------------------------------------------------------------------
// Segments and allocation

bool MasterService::SegmentLive(uint32_t segment_id) const {
  auto it = segments_.find(segment_id);
  return it != segments_.end() && !it->second->unmounting;
}

uint32_t MasterService::PickSegment(uint64_t aligned, absl::Span<const AllocatedReplica> used,
                                    absl::string_view only_name) {
  auto usable = [&](const Segment& s) {
    if (s.unmounting || s.allocator.largest_free_extent() < aligned) return false;
    if (!only_name.empty() && s.desc.name != only_name) return false;
    for (const AllocatedReplica& u : used) {
      if (segments_.at(u.segment_id)->desc.name == s.desc.name) return false;
    }
    return true;
  };
  // Prefer the emptier segment (by free fraction) so new objects spread instead of piling up.
  auto better = [](const Segment& a, const Segment& b) {
    return static_cast<double>(a.allocator.free_bytes()) / static_cast<double>(a.desc.size) >
           static_cast<double>(b.allocator.free_bytes()) / static_cast<double>(b.desc.size);
  };
  if (only_name.empty() && allocatable_.size() > 2) {
    // Best of two random choices: O(1) and close to balanced.
    Segment* a = segments_.at(allocatable_[rng_.Uniform(allocatable_.size())]).get();
    Segment* b = segments_.at(allocatable_[rng_.Uniform(allocatable_.size())]).get();
    const bool ua = usable(*a);
    const bool ub = usable(*b);
    if (ua && ub) return better(*b, *a) ? b->id : a->id;
    if (ua) return a->id;
    if (ub) return b->id;
  }
  Segment* best = nullptr;
  for (uint32_t id : allocatable_) {
    Segment* s = segments_.at(id).get();
    if (usable(*s) && (best == nullptr || better(*s, *best))) best = s;
  }
  return best == nullptr ? 0 : best->id;
}

bool MasterService::AllocateReplicas(uint64_t size, const ReplicateConfig& config,
                                     std::vector<AllocatedReplica>* out) {
  out->clear();
  if (allocatable_names_.size() < static_cast<size_t>(config.replica_num)) return false;
  const uint64_t aligned = SegmentAllocator::AlignedSize(size);
  auto place = [&](uint32_t id) {
    Segment& s = *segments_.at(id);
    auto offset = s.allocator.Allocate(size);
    if (!offset.has_value()) return false;  // unreachable: PickSegment checked the largest extent
    allocated_bytes_ += aligned;
    out->push_back(AllocatedReplica{id, s.desc.base + *offset});
    return true;
  };
  for (const std::string& name : config.preferred_segments) {
    if (static_cast<int>(out->size()) == config.replica_num) break;
    const uint32_t id = PickSegment(aligned, *out, name);
    if (id != 0) place(id);
  }
  while (static_cast<int>(out->size()) < config.replica_num) {
    const uint32_t id = PickSegment(aligned, *out, "");
    if (id == 0 || !place(id)) {
      for (const AllocatedReplica& r : *out) FreeReplica(r.segment_id, r.address, size);
      out->clear();
      return false;
    }
  }
  return true;
}

void MasterService::FreeReplica(uint32_t segment_id, uint64_t address, uint64_t size) {
  auto it = segments_.find(segment_id);
  if (it == segments_.end()) return;  // the segment is gone, and its allocator with it
  Segment& s = *it->second;
  const absl::Status freed = s.allocator.Free(address - s.desc.base, size);
  if (!freed.ok()) {
    MC_LOG(ERROR) << "allocator accounting bug in segment " << s.desc.name << ": " << freed;
    return;
  }
  allocated_bytes_ -= SegmentAllocator::AlignedSize(size);
}

void MasterService::FreeRecordReplicas(const ObjectRecord& record) {
  for (int i = 0; i < record.num_replicas; ++i) {
    FreeReplica(record.segment(i), record.address(i), record.size);
  }
}

bool MasterService::EvictionCouldHelp(uint64_t size, int replica_num) const {
  const uint64_t aligned = SegmentAllocator::AlignedSize(size);
  absl::flat_hash_set<absl::string_view> names;
  for (uint32_t id : allocatable_) {
    const Segment& s = *segments_.at(id);
    if (s.desc.size >= aligned) names.insert(s.desc.name);
  }
  return static_cast<int>(names.size()) >= replica_num;
}

// ---------------------------------------------------------------------------------------------
// Segments and clients

void MasterService::BeginUnmount(uint32_t id) {
  auto it = segments_.find(id);
  if (it == segments_.end() || it->second->unmounting) return;
  Segment& s = *it->second;
  s.unmounting = true;
  if (options_.journal != nullptr) options_.journal->SegmentUnmounted(id);
  // A segment not yet unmounting is always allocatable and counted under its name.
  auto pos = std::find(allocatable_.begin(), allocatable_.end(), id);
  if (pos != allocatable_.end()) allocatable_.erase(pos);
  auto name_it = allocatable_names_.find(s.desc.name);
  if (name_it != allocatable_names_.end() && --name_it->second == 0) {
    allocatable_names_.erase(name_it);
  }
  auto client_it = clients_.find(s.owner);
  if (client_it != clients_.end()) {
    std::vector<uint32_t>& ids = client_it->second->segment_ids;
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  }
}

void MasterService::UnmountSegments(const std::vector<uint32_t>& ids) {
  if (ids.empty()) return;
  // Readers check liveness while the counter is non-zero; raise it before marking.
  unmounts_in_progress_.fetch_add(1);
  {
    absl::MutexLock lock(&seg_mu_);
    for (uint32_t id : ids) BeginUnmount(id);
  }
  const absl::flat_hash_set<uint32_t> dead(ids.begin(), ids.end());
  uint64_t dropped = 0;
  std::vector<AllocatedReplica> kept;
  for (size_t s = 0; s < kNumShards; ++s) {
    Shard& shard = shards_[s];
    absl::MutexLock lock(&shard.mu);
    for (auto it = shard.objects.begin(); it != shard.objects.end();) {
      ObjectRecord* r = *it;
      kept.clear();
      for (int j = 0; j < r->num_replicas; ++j) {
        if (!dead.contains(r->segment(j))) kept.push_back({r->segment(j), r->address(j)});
      }
      // A disk copy lives in the memory of its process's tier: it goes with that process.
      const bool disk_dead = r->disk_segment != 0 && dead.contains(r->disk_segment);
      if (kept.size() == r->num_replicas && !disk_dead) {
        ++it;
        continue;
      }
      dropped += r->num_replicas - kept.size();
      if (disk_dead) r->disk_segment = 0;
      if (kept.empty() && r->disk_segment == 0) {
        if (r->complete() && options_.on_object_dropped) {
          options_.on_object_dropped(r->key(), ObjectDropReason::kSegmentLost);
        }
        shard.objects.erase(it++);
        if (!r->complete()) --shard.num_processing;
        ObjectRecord::Delete(r);  // nothing to free: its only space was on dead segments
        continue;
      }
      r->SetReplicas(kept);
      ++it;
    }
  }
  {
    absl::MutexLock lock(&seg_mu_);
    for (uint32_t id : ids) {
      auto it = segments_.find(id);
      if (it == segments_.end()) continue;
      const Segment& seg = *it->second;
      MC_LOG(INFO) << "unmounted segment " << seg.desc.name << " base "
                   << absl::StrCat("0x", absl::Hex(seg.desc.base)) << " of client "
                   << seg.owner.ToString();
      capacity_bytes_ -= seg.desc.size;
      allocated_bytes_ -= seg.allocator.allocated();
      segment_ids_.erase(std::make_pair(seg.desc.name, seg.desc.base));
      segments_.erase(it);
    }
    auto keep = std::remove_if(discarded_.begin(), discarded_.end(), [&](const DiscardedBlock& b) {
      return dead.contains(b.segment_id);
    });
    for (auto it = keep; it != discarded_.end(); ++it) {
      discarded_bytes_ -= SegmentAllocator::AlignedSize(it->size);
    }
    discarded_.erase(keep, discarded_.end());
  }
  unmounts_in_progress_.fetch_sub(1);
  Add(counters_->dropped_replicas, dropped);
}

absl::Status MasterService::MountLocked(const ClientId& client, const SegmentDesc& segment) {
  std::vector<uint32_t> victims;
  {
    absl::MutexLock lock(&seg_mu_);
    auto existing = segment_ids_.find(std::make_pair(segment.name, segment.base));
    uint32_t renewed = 0;  // the same memory under a new instance: it replaces the old record
    if (existing != segment_ids_.end()) {
      const Segment& s = *segments_.at(existing->second);
      if (s.owner == client && !s.unmounting) {
        if (s.desc.size != segment.size) {
          return MakeError(
              ErrorCode::SEGMENT_ALREADY_EXISTS,
              absl::StrCat("segment ", segment.name, " base 0x", absl::Hex(segment.base),
                           " is mounted with size ", s.desc.size));
        }
        // One process's instances only grow (TransferEngine::FenceInbound): an equal or lower one
        // is a repeated or late mount, and changes nothing.
        if (segment.instance == 0 || segment.instance <= s.desc.instance) return absl::OkStatus();
        // The owner fenced its inbound writes (docs/architecture.md, "Invariants"): replicas
        // naming the old instance cannot be served any more, so they go with the old record.
        renewed = existing->second;
        victims.push_back(renewed);
      }
    }
    for (const auto& [id, s] : segments_) {
      if (s->desc.name != segment.name || s->unmounting || id == renewed) continue;
      if (s->owner != client) {
        victims.push_back(id);
      } else if (s->desc.base < segment.base + segment.size &&
                 segment.base < s->desc.base + s->desc.size) {
        return MakeError(ErrorCode::SEGMENT_ALREADY_EXISTS,
                         absl::StrCat("segment ", segment.name, " range overlaps base 0x",
                                      absl::Hex(s->desc.base)));
      }
    }
  }
  if (!victims.empty()) {
    // A transfer-engine segment name belongs to one live process: the old owner is gone.
    MC_LOG(WARNING) << "segment name " << segment.name << " remounted by client "
                    << client.ToString() << "; dropping " << victims.size()
                    << " segment(s) of its previous owner";
    std::sort(victims.begin(), victims.end());
    UnmountSegments(victims);
  }
  absl::MutexLock lock(&seg_mu_);
  const uint32_t id = next_segment_id_++;
  segments_.emplace(id, std::make_unique<Segment>(id, segment, client));
  if (options_.journal != nullptr) options_.journal->SegmentMounted(id, client, segment);
  segment_ids_[std::make_pair(segment.name, segment.base)] = id;
  allocatable_.push_back(id);
  ++allocatable_names_[segment.name];
  capacity_bytes_ += segment.size;
  std::unique_ptr<Client>& c = clients_[client];
  if (c == nullptr) c = std::make_unique<Client>();
  c->last_heartbeat_ns = NowNanos();
  c->segment_ids.push_back(id);
  MC_LOG(INFO) << "mounted segment " << segment.name << " base "
               << absl::StrCat("0x", absl::Hex(segment.base)) << " size " << segment.size
               << " for client " << client.ToString();
  return absl::OkStatus();
}

absl::Status MasterService::MountSegment(const ClientId& client, const SegmentDesc& segment) {
  Add(counters_->mount_calls, 1);
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  if (absl::Status s = ValidateSegmentDesc(segment); !s.ok()) return s;
  absl::MutexLock admin(&admin_mu_);
  return MountLocked(client, segment);
}

absl::Status MasterService::RemountSegment(const ClientId& client,
                                           absl::Span<const SegmentDesc> segments) {
  Add(counters_->mount_calls, 1);
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  if (segments.size() > kMaxBatchKeys) {
    return MakeError(ErrorCode::INVALID_PARAMS, "too many segments");
  }
  for (const SegmentDesc& segment : segments) {
    if (absl::Status s = ValidateSegmentDesc(segment); !s.ok()) return s;
  }
  absl::MutexLock admin(&admin_mu_);
  {
    absl::MutexLock lock(&seg_mu_);
    std::unique_ptr<Client>& c = clients_[client];
    if (c == nullptr) c = std::make_unique<Client>();
    c->last_heartbeat_ns = NowNanos();
  }
  absl::Status first_error;
  for (const SegmentDesc& segment : segments) {
    absl::Status s = MountLocked(client, segment);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  return first_error;
}

absl::Status MasterService::UnmountSegment(const ClientId& client, absl::string_view name,
                                           uint64_t base) {
  Add(counters_->unmount_calls, 1);
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  absl::MutexLock admin(&admin_mu_);
  uint32_t id = 0;
  {
    absl::MutexLock lock(&seg_mu_);
    if (!clients_.contains(client)) {
      return MakeError(ErrorCode::CLIENT_NOT_FOUND,
                       absl::StrCat("client ", client.ToString(), " is not known"));
    }
    auto it = segment_ids_.find(std::make_pair(std::string(name), base));
    if (it == segment_ids_.end() || segments_.at(it->second)->owner != client) {
      return MakeError(ErrorCode::SEGMENT_NOT_FOUND,
                       absl::StrCat("client ", client.ToString(), " has no segment ", name,
                                    " at base 0x", absl::Hex(base)));
    }
    id = it->second;
  }
  UnmountSegments({id});
  return absl::OkStatus();
}

absl::StatusOr<HeartbeatResult> MasterService::Heartbeat(const ClientId& client) {
  Add(counters_->heartbeat_calls, 1);
  if (absl::Status s = ValidateClient(client); !s.ok()) return s;
  HeartbeatResult result;
  result.client_ttl = options_.client_ttl;
  absl::MutexLock lock(&seg_mu_);
  auto it = clients_.find(client);
  if (it == clients_.end()) {
    result.need_remount = true;
  } else {
    it->second->last_heartbeat_ns = NowNanos();
  }
  return result;
}

std::vector<SegmentStatus> MasterService::ListSegments() const {
  std::vector<SegmentStatus> out;
  {
    absl::ReaderMutexLock lock(&seg_mu_);
    out.reserve(segments_.size());
    for (const auto& [id, s] : segments_) {
      if (s->unmounting) continue;
      out.push_back(SegmentStatus{s->desc, s->owner, s->allocator.allocated()});
    }
  }
  std::sort(out.begin(), out.end(), [](const SegmentStatus& a, const SegmentStatus& b) {
    return std::tie(a.segment.name, a.segment.base) < std::tie(b.segment.name, b.segment.base);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Periodic work

uint64_t MasterService::DiscardAbandonedPuts(int64_t now) {
  const int64_t discard_ns = absl::ToInt64Nanoseconds(options_.put_start_discard_timeout);
  uint64_t discarded = 0;
  for (size_t s = 0; s < kNumShards; ++s) {
    Shard& shard = shards_[s];
    absl::MutexLock lock(&shard.mu);
    if (shard.num_processing == 0) continue;
    for (auto it = shard.objects.begin(); it != shard.objects.end();) {
      ObjectRecord* r = *it;
      if (r->complete() || now - r->last_use_ns < discard_ns) {
        ++it;
        continue;
      }
      shard.objects.erase(it++);
      --shard.num_processing;
      DiscardRecord(r, now);
      ObjectRecord::Delete(r);
      ++discarded;
    }
  }
  Add(counters_->discarded_puts, discarded);
  return discarded;
}

uint64_t MasterService::ReleaseDiscarded(int64_t now) {
  absl::MutexLock lock(&seg_mu_);
  uint64_t released = 0;
  auto keep = std::remove_if(discarded_.begin(), discarded_.end(), [&](const DiscardedBlock& b) {
    if (b.release_ns > now) return false;
    FreeReplica(b.segment_id, b.address, b.size);
    released += SegmentAllocator::AlignedSize(b.size);
    return true;
  });
  discarded_.erase(keep, discarded_.end());
  discarded_bytes_ -= released;
  return released;
}

TickReport MasterService::Tick() {
  TickReport report;
  const int64_t now = NowNanos();
  {
    absl::MutexLock admin(&admin_mu_);
    std::vector<uint32_t> dead;
    {
      absl::MutexLock lock(&seg_mu_);
      const int64_t gap = now - last_tick_ns_;
      last_tick_ns_ = now;
      if (options_.tick_stall_threshold > absl::ZeroDuration() &&
          gap > absl::ToInt64Nanoseconds(options_.tick_stall_threshold)) {
        // The master was not running: the silence of the gap was its own, not the clients'.
        // Their heartbeats of the gap may have timed out on their side, so each gets a whole
        // client_ttl from now to be heard again.
        MC_LOG(WARNING) << "master stalled for " << absl::FormatDuration(absl::Nanoseconds(gap))
                        << "; every client gets a full ttl from now";
        for (auto& [id, client] : clients_) client->last_heartbeat_ns = now;
      }
      const int64_t ttl_ns = absl::ToInt64Nanoseconds(options_.client_ttl);
      for (auto it = clients_.begin(); it != clients_.end();) {
        if (now - it->second->last_heartbeat_ns <= ttl_ns) {
          ++it;
          continue;
        }
        MC_LOG(WARNING) << "client " << it->first.ToString() << " missed its heartbeats for "
                        << absl::FormatDuration(
                               absl::Nanoseconds(now - it->second->last_heartbeat_ns))
                        << "; unmounting its " << it->second->segment_ids.size() << " segment(s)";
        dead.insert(dead.end(), it->second->segment_ids.begin(), it->second->segment_ids.end());
        clients_.erase(it++);
        ++report.expired_clients;
      }
    }
    std::sort(dead.begin(), dead.end());
    UnmountSegments(dead);
    report.unmounted_segments = dead.size();
    Add(counters_->expired_clients, report.expired_clients);

    // A full scan for abandoned puts at most every quarter of the discard timeout (and 1 s).
    const int64_t scan_interval = std::min<int64_t>(
        absl::ToInt64Nanoseconds(options_.put_start_discard_timeout) / 4, 1000000000);
    if (now - last_discard_scan_ns_ >= scan_interval) {
      last_discard_scan_ns_ = now;
      report.discarded_puts = DiscardAbandonedPuts(now);
    }
    report.released_bytes = ReleaseDiscarded(now);
  }
  bool over_watermark = false;
  {
    absl::ReaderMutexLock lock(&seg_mu_);
    // Discarded reservations cannot be evicted, so they do not count toward the watermark.
    over_watermark =
        capacity_bytes_ > 0 &&
        static_cast<double>(allocated_bytes_ - discarded_bytes_) >=
            options_.eviction_high_watermark_ratio * static_cast<double>(capacity_bytes_);
  }
  if (over_watermark) {
    absl::MutexLock lock(&eviction_mu_);
    report.evicted_objects = Evict(now);
  }
  return report;
}

}  // namespace mooncake
