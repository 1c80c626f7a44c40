// MemoryBudget: a server-wide cap on the bytes a server holds for requests whose size the peer
// chose (RPC requests, control frames, metadata bodies). Memory is charged as bytes arrive, never
// for what a header merely claims, so a peer that announces a huge payload and trickles it holds
// only what it sent; once the cap is reached further requests are refused (not queued: a slow
// peer must not stall the others), and the refusal is counted.
//
//   MemoryBudget budget(256 << 20);
//   std::string payload;
//   MemoryBudget::Reservation held(&budget);
//   absl::Status s = RecvPayload(fd, header.length, &held, &payload);  // RESOURCE_EXHAUSTED:
//   refused
//   ...  // `held` returns its bytes to the budget when it goes away
#ifndef MOONCAKE_NET_MEMORY_BUDGET_H_
#define MOONCAKE_NET_MEMORY_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace mooncake {

class MemoryBudget {
 public:
  // limit is the most bytes held at once by all reservations together (> 0).
  explicit MemoryBudget(uint64_t limit) : limit_(limit) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  // refused counts requests turned away because the budget was full.
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

  // Reservation holds bytes of a budget; they return when it is destroyed or Reset.
  class Reservation {
   public:
    explicit Reservation(MemoryBudget* budget) : budget_(budget) {}
    ~Reservation() { Reset(); }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    // Grow charges `n` more bytes; false (nothing charged, refusal counted) if they do not fit.
    bool Grow(uint64_t n);
    void Reset();
    uint64_t bytes() const { return bytes_; }

   private:
    MemoryBudget* const budget_;
    uint64_t bytes_ = 0;
  };

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> refused_{0};
};

// RecvPayload reads exactly `length` bytes from `fd` into *out (replacing its contents), growing
// the string only as bytes arrive and charging them to `held`. RESOURCE_EXHAUSTED if the budget
// cannot hold them: the payload is read to its end and dropped, so the stream stays in step and
// the caller can answer with an error. Other errors are the socket's.
absl::Status RecvPayload(int fd, uint64_t length, MemoryBudget::Reservation* held,
                         std::string* out);

}  // namespace mooncake

#endif  // MOONCAKE_NET_MEMORY_BUDGET_H_
