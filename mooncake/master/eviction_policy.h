// EvictionPolicy: which objects eviction may take, and in what order (docs/compatibility.md section
// 5, written down in docs/architecture.md). The master's default is LruEvictionPolicy; the
// simulator injects a broken one (a planted bug) to show its invariant checker catches it.
#ifndef MOONCAKE_MASTER_EVICTION_POLICY_H_
#define MOONCAKE_MASTER_EVICTION_POLICY_H_

#include <cstdint>

namespace mooncake {

// EvictionCandidate is what a policy sees of one object.
struct EvictionCandidate {
  bool complete = false;
  bool hard_pinned = false;
  bool soft_pinned = false;
  int64_t last_use_ns = 0;      // last put-end or lease grant
  int64_t lease_expiry_ns = 0;  // read lease end (0: never leased)
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // Evictable: may the object be evicted at `now_ns`?
  virtual bool Evictable(const EvictionCandidate& c, int64_t now_ns) const = 0;
  // Rank orders the evictable: lower goes first; equal ranks go in key order.
  virtual uint64_t Rank(const EvictionCandidate& c) const = 0;
};

// LruEvictionPolicy: COMPLETE objects whose lease is over and that are not hard-pinned; unpinned
// before soft-pinned, least recently used first.
class LruEvictionPolicy : public EvictionPolicy {
 public:
  bool Evictable(const EvictionCandidate& c, int64_t now_ns) const override {
    return c.complete && !c.hard_pinned && c.lease_expiry_ns <= now_ns;
  }
  uint64_t Rank(const EvictionCandidate& c) const override {
    return (c.soft_pinned ? (uint64_t{1} << 63) : 0) |
           static_cast<uint64_t>(c.last_use_ns > 0 ? c.last_use_ns : 0);
  }
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_EVICTION_POLICY_H_
