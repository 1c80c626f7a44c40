// Simulator: a single-threaded discrete-event scheduler with virtual time, one seeded random
// generator and a running hash of everything that happened, so a run is a pure function of its seed
// (docs/architecture.md, "What runs in the simulator", the FoundationDB / TigerBeetle way).
//
// Events run in (time, scheduling order): two events due at the same nanosecond run in the order
// they were scheduled, never in an order that depends on pointers, hashing or threads. Every
// executed event folds (time, label) into trace_hash(); code may fold more values with Trace(). Two
// runs of one seed on one binary must end with the same trace_hash() and events_executed(); when
// they do not, something read wall time, an unordered container's order or an unseeded random
// source.
//
//   sim::Simulator sim(/*seed=*/42);
//   sim.Schedule(5 * sim::kMicrosecond, "ping", [&] { sim.Trace(1); });
//   sim.RunUntil([&] { return done; }, /*deadline=*/sim::kSecond);
//   MC_LOG(INFO) << "seed " << sim.seed() << " hash " << sim.trace_hash();
//
// Not thread-safe: one thread drives the simulator and everything scheduled on it.
#ifndef SIM_KERNEL_SIMULATOR_H_
#define SIM_KERNEL_SIMULATOR_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/rng.h"

namespace sim {

// SimTime is simulated time in nanoseconds since the start of the simulation.
using SimTime = int64_t;
constexpr SimTime kNanosecond = 1;
constexpr SimTime kMicrosecond = 1000;
constexpr SimTime kMillisecond = 1000 * kMicrosecond;
constexpr SimTime kSecond = 1000 * kMillisecond;

class Simulator;

// SimClock is the mooncake::Clock that production code sees inside the simulator: it reads the
// simulator's virtual time. Only the simulator's thread may read it.
class SimClock final : public mooncake::Clock {
 public:
  explicit SimClock(const Simulator* sim) : sim_(sim) {}
  int64_t NowNanos() const override;

 private:
  const Simulator* sim_;
};

// EventId names a scheduled event so it can be cancelled. A default EventId names no event.
struct EventId {
  uint64_t seq = 0;   // 1-based scheduling sequence number; 0 = none
  uint32_t slot = 0;  // where the callback is stored
  bool valid() const { return seq != 0; }
};

class Simulator {
 public:
  using Callback = std::function<void()>;

  explicit Simulator(uint64_t seed);
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // seed is the value the simulator (and its rng()) was started with.
  uint64_t seed() const { return seed_; }

  // Now is the current virtual time. It only moves forward.
  SimTime Now() const { return now_; }

  // Schedule runs `fn` at Now() + delay (delay >= 0). `label` names the kind of event in the trace
  // hash and in debug logs; it is hashed at once, so any string works.
  EventId Schedule(SimTime delay, absl::string_view label, Callback fn);

  // ScheduleAt runs `fn` at absolute time `time` (>= Now()).
  EventId ScheduleAt(SimTime time, absl::string_view label, Callback fn);

  // Cancel removes a pending event; returns false if it already ran or was cancelled.
  bool Cancel(EventId id);

  // ScheduleRepeating runs `fn` at Now() + period, then every `period` for as long as it returns
  // true (e.g. a transport's Poll loop). period > 0.
  void ScheduleRepeating(SimTime period, absl::string_view label, std::function<bool()> fn);

  // Step runs the next event (advancing Now() to its time); returns false if none is pending.
  bool Step();

  // RunUntil runs every event due at or before `time`, then moves Now() to `time` (if later).
  void RunUntil(SimTime time);

  // RunFor is RunUntil(Now() + duration).
  void RunFor(SimTime duration);

  // RunUntilIdle runs events until none is pending or `max_events` ran; returns how many ran.
  // A simulation with periodic timers is never idle: prefer RunUntil(done, deadline).
  uint64_t RunUntilIdle(uint64_t max_events = std::numeric_limits<uint64_t>::max());

  // RunUntil runs events until `done()` holds (checked first and after every event) or the next
  // event is later than `deadline`; in the second case Now() becomes `deadline`. Returns done().
  bool RunUntil(const std::function<bool()>& done, SimTime deadline);

  // Trace folds a value into the trace hash (e.g. a completion status or byte count).
  void Trace(uint64_t value) { Fold(value); }
  void Trace(absl::string_view text);

  // trace_hash summarizes every executed event and every Trace() call so far.
  uint64_t trace_hash() const { return hash_; }

  // events_executed counts events that ran (cancelled ones excluded).
  uint64_t events_executed() const { return events_executed_; }

  // pending_events counts scheduled events that have not run and were not cancelled.
  size_t pending_events() const { return live_events_; }

  // rng is the simulation's only source of randomness.
  mooncake::Rng& rng() { return rng_; }

  // clock is a Clock reading this simulator's time; valid as long as the simulator.
  mooncake::Clock* clock() { return &clock_; }

  // SetAfterEventHook installs a function run after every event (e.g. an invariant checker);
  // nullptr removes it.
  void SetAfterEventHook(Callback hook) { after_event_hook_ = std::move(hook); }

  // set_log_events logs every event (time and label) at INFO, for debugging one seed.
  void set_log_events(bool on) { log_events_ = on; }

  // HashLabel is the 64-bit FNV-1a hash used for labels and Trace(text).
  static uint64_t HashLabel(absl::string_view text);

 private:
  struct HeapEntry {
    SimTime time;
    uint64_t seq;
    uint32_t slot;
  };
  // Orders the heap so that the smallest (time, seq) is on top.
  struct Later {
    bool operator()(const HeapEntry& a, const HeapEntry& b) const {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };
  // Slot holds a pending callback; seq == 0 marks a free or cancelled slot. A heap entry whose seq
  // differs from its slot's seq is stale (cancelled) and is skipped.
  struct Slot {
    Callback fn;
    uint64_t seq = 0;
    uint64_t label_hash = 0;
    std::string label;  // kept only when log_events_ is on
  };

  void Fold(uint64_t value);
  // NextTime drops cancelled entries from the top of the heap and returns the earliest pending
  // time, or false if nothing is pending.
  bool NextTime(SimTime* time);

  const uint64_t seed_;
  SimTime now_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t events_executed_ = 0;
  size_t live_events_ = 0;
  uint64_t hash_;
  std::vector<HeapEntry> heap_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  mooncake::Rng rng_;
  SimClock clock_;
  Callback after_event_hook_;
  bool log_events_ = false;
};

}  // namespace sim

#endif  // SIM_KERNEL_SIMULATOR_H_
