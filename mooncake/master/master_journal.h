// The durable part of the master's state, as changes (MasterJournal) and as a whole
// (MasterSnapshot). High availability (mooncake/master/ha, docs/ha.md) ships both to standby
// masters: a standby that starts from a snapshot and applies every later change holds exactly the
// objects, segments and reservations of the leader, and can take over from it.
//
// Durable: objects (key, put id, size, pins, state, replicas), mounted segments and their owners,
// and the reservations of discarded puts. Soft, and rebuilt by a new leader: read leases (every
// object is leased for default_kv_lease_ttl when a leader takes over), heartbeats (every owner
// counts as heard from at takeover), LRU order, counters.
#ifndef MOONCAKE_MASTER_MASTER_JOURNAL_H_
#define MOONCAKE_MASTER_MASTER_JOURNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "mooncake/master/master_types.h"

namespace mooncake {

// Object flags, as journaled and snapshotted.
inline constexpr uint8_t kObjectComplete = 1;
inline constexpr uint8_t kObjectSoftPin = 2;
inline constexpr uint8_t kObjectHardPin = 4;
// Soft (never journaled or snapshotted): an SSD tier is copying the object (master_offload.cc).
inline constexpr uint8_t kObjectOffloading = 8;

// MasterSnapshot is the durable state at one instant. Segment ids are the ids of the service that
// took it: unique within the snapshot, and the ids later journal records use.
struct MasterSnapshot {
  struct Segment {
    uint32_t id = 0;
    ClientId owner;
    SegmentDesc desc;
  };
  struct Replica {
    uint32_t segment_id = 0;
    uint64_t address = 0;  // absolute, inside the segment
  };
  struct Object {
    std::string key;
    uint64_t put_id = 0;
    uint64_t size = 0;
    uint8_t flags = 0;  // kObject*
    std::vector<Replica> replicas;
  };
  // Space of a discarded put that stays reserved for `remaining_ns` more.
  struct Reservation {
    uint32_t segment_id = 0;
    uint64_t address = 0;
    uint64_t size = 0;
    int64_t remaining_ns = 0;
  };
  std::vector<Segment> segments;
  std::vector<Object> objects;
  std::vector<Reservation> reservations;
};

// MasterJournal receives every durable change of a MasterService (MasterServiceOptions::journal).
// Calls are made under the service's locks, so their order is an order in which the changes
// happened: two changes to one key, or to the same space, are reported in the order they took
// effect. Implementations must be quick and must not call back into the service.
//
// What a change implies, which a standby applies itself (so it is not reported per object):
// SegmentUnmounted drops every replica on the segment, every object left without a replica, and
// every reservation on it.
class MasterJournal {
 public:
  virtual ~MasterJournal() = default;

  // A put started: a PROCESSING object with these replicas (or, with kObjectComplete, an object
  // that is complete at once; never sent today).
  virtual void ObjectStarted(absl::string_view key, uint64_t put_id, uint64_t size, uint8_t flags,
                             absl::Span<const MasterSnapshot::Replica> replicas) = 0;
  // The put `put_id` of `key` completed.
  virtual void ObjectCompleted(absl::string_view key, uint64_t put_id) = 0;
  // The object (put `put_id` of `key`) is gone. Its space is free if `reserve_ns` is 0, or stays
  // reserved for `reserve_ns` more (a discarded put whose writer may still be writing).
  virtual void ObjectDropped(absl::string_view key, uint64_t put_id, int64_t reserve_ns) = 0;
  virtual void SegmentMounted(uint32_t segment_id, const ClientId& owner,
                              const SegmentDesc& desc) = 0;
  virtual void SegmentUnmounted(uint32_t segment_id) = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_JOURNAL_H_
