#include "sim/kernel/simulator.h"

#include <algorithm>
#include <utility>

#include "mooncake/common/logging.h"

namespace sim {

namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

// Mix is the murmur3 64-bit finalizer: every input bit affects every output bit.
uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

}  // namespace

int64_t SimClock::NowNanos() const { return sim_->Now(); }

Simulator::Simulator(uint64_t seed)
    : seed_(seed), hash_(Mix(seed ^ kFnvOffset)), rng_(seed), clock_(this) {}

uint64_t Simulator::HashLabel(absl::string_view text) {
  uint64_t h = kFnvOffset;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= kFnvPrime;
  }
  return h;
}

void Simulator::Fold(uint64_t value) {
  // Order-sensitive: folding a then b differs from b then a.
  hash_ = Mix(hash_ ^ (value + 0x9e3779b97f4a7c15ull + (hash_ << 6) + (hash_ >> 2)));
}

void Simulator::Trace(absl::string_view text) { Fold(HashLabel(text)); }

EventId Simulator::Schedule(SimTime delay, absl::string_view label, Callback fn) {
  MC_CHECK(delay >= 0) << "negative delay " << delay << " for event " << label;
  return ScheduleAt(now_ + delay, label, std::move(fn));
}

EventId Simulator::ScheduleAt(SimTime time, absl::string_view label, Callback fn) {
  MC_CHECK(time >= now_) << "event " << label << " scheduled in the past (" << time << " < " << now_
                         << ")";
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  const uint64_t seq = next_seq_++;
  Slot& s = slots_[slot];
  s.fn = std::move(fn);
  s.seq = seq;
  s.label_hash = HashLabel(label);
  if (log_events_) s.label = std::string(label);
  heap_.push_back(HeapEntry{time, seq, slot});
  std::push_heap(heap_.begin(), heap_.end(), Later());
  ++live_events_;
  return EventId{seq, slot};
}

bool Simulator::Cancel(EventId id) {
  if (!id.valid() || id.slot >= slots_.size()) return false;
  Slot& s = slots_[id.slot];
  if (s.seq != id.seq) return false;
  s.seq = 0;
  s.fn = nullptr;
  s.label.clear();
  free_slots_.push_back(id.slot);
  --live_events_;
  return true;
}

void Simulator::ScheduleRepeating(SimTime period, absl::string_view label,
                                  std::function<bool()> fn) {
  MC_CHECK(period > 0) << "repeating event " << label << " needs a positive period";
  const std::string name(label);
  Schedule(period, label, [this, period, name, fn = std::move(fn)]() mutable {
    if (fn()) ScheduleRepeating(period, name, std::move(fn));
  });
}

bool Simulator::NextTime(SimTime* time) {
  while (!heap_.empty()) {
    const HeapEntry& top = heap_.front();
    if (slots_[top.slot].seq == top.seq) {
      *time = top.time;
      return true;
    }
    std::pop_heap(heap_.begin(), heap_.end(), Later());
    heap_.pop_back();
  }
  return false;
}

bool Simulator::Step() {
  SimTime time;
  if (!NextTime(&time)) return false;
  const HeapEntry entry = heap_.front();
  std::pop_heap(heap_.begin(), heap_.end(), Later());
  heap_.pop_back();

  // Free the slot before running: the callback may schedule (and reuse the slot).
  Slot& slot = slots_[entry.slot];
  Callback fn = std::move(slot.fn);
  slot.fn = nullptr;
  slot.seq = 0;
  const uint64_t label_hash = slot.label_hash;
  if (log_events_) {
    MC_LOG(INFO) << "sim t=" << entry.time << " #" << entry.seq << " " << slot.label;
    slot.label.clear();
  }
  free_slots_.push_back(entry.slot);
  --live_events_;

  now_ = entry.time;
  ++events_executed_;
  Fold(static_cast<uint64_t>(now_));
  Fold(label_hash);
  fn();
  if (after_event_hook_) after_event_hook_();
  return true;
}

void Simulator::RunUntil(SimTime time) {
  SimTime next;
  while (NextTime(&next) && next <= time) Step();
  if (time > now_) now_ = time;
}

void Simulator::RunFor(SimTime duration) { RunUntil(now_ + duration); }

uint64_t Simulator::RunUntilIdle(uint64_t max_events) {
  uint64_t ran = 0;
  while (ran < max_events && Step()) ++ran;
  return ran;
}

bool Simulator::RunUntil(const std::function<bool()>& done, SimTime deadline) {
  if (done()) return true;
  SimTime next;
  while (NextTime(&next) && next <= deadline) {
    Step();
    if (done()) return true;
  }
  if (deadline > now_) now_ = deadline;
  return done();
}

}  // namespace sim
