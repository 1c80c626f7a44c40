// StandbyState: what a standby master holds while it follows the leader. It starts from the
// leader's snapshot and applies every journal record after it (master_journal.h), so at any point
// it equals the leader's durable state as of the last record applied. ToSnapshot() feeds
// MasterService::Restore when this standby takes over.
//
// Not thread-safe: the replication receiver owns it and hands it over under its own lock.
#ifndef MOONCAKE_MASTER_HA_STANDBY_STATE_H_
#define MOONCAKE_MASTER_HA_STANDBY_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "mooncake/common/clock.h"
#include "mooncake/master/master_journal.h"
#include "mooncake/proto/ha.pb.h"

namespace mooncake::ha {

class StandbyState {
 public:
  explicit StandbyState(Clock* clock) : clock_(clock) {}

  // Reset forgets everything (a new leader's stream starts).
  void Reset();
  // Apply one part of the leader's snapshot, or one journal record. A record that names an
  // unknown segment or object is an error (the stream is out of step: the standby must resync)
  // and changes nothing.
  absl::Status ApplySnapshotPart(const proto::ha::SnapshotPart& part);
  absl::Status ApplyOp(const proto::ha::Op& op);

  // ToSnapshot is the state as a MasterSnapshot; reservations keep their remaining time.
  MasterSnapshot ToSnapshot() const;

  size_t num_objects() const { return objects_.size(); }
  size_t num_segments() const { return segments_.size(); }

 private:
  struct Object {
    uint64_t put_id = 0;
    uint64_t size = 0;
    uint8_t flags = 0;
    std::vector<MasterSnapshot::Replica> replicas;
  };
  struct Reservation {
    uint32_t segment_id;
    uint64_t address;
    uint64_t size;
    int64_t deadline_ns;  // on our clock
  };

  absl::Status AddSegment(const proto::ha::Segment& s);
  absl::Status AddObject(const proto::ha::Object& o);
  void Unmount(uint32_t segment_id);
  void Reserve(uint32_t segment_id, uint64_t address, uint64_t size, int64_t remaining_ns);

  Clock* const clock_;
  absl::flat_hash_map<uint32_t, MasterSnapshot::Segment> segments_;
  absl::flat_hash_map<std::string, Object> objects_;
  std::vector<Reservation> reservations_;
};

}  // namespace mooncake::ha

#endif  // MOONCAKE_MASTER_HA_STANDBY_STATE_H_
