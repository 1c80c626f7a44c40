#include "mooncake/net/memory_budget.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

TEST(MemoryBudgetTest, ReservationsShareTheLimitAndGiveBytesBack) {
  MemoryBudget budget(100);
  {
    MemoryBudget::Reservation a(&budget), b(&budget);
    EXPECT_TRUE(a.Grow(60));
    EXPECT_FALSE(b.Grow(41));  // 60 + 41 > 100: refused, nothing charged
    EXPECT_EQ(budget.used(), 60u);
    EXPECT_EQ(budget.refused(), 1u);
    EXPECT_TRUE(b.Grow(40));
    EXPECT_EQ(budget.used(), 100u);
  }
  EXPECT_EQ(budget.used(), 0u);
  MemoryBudget::Reservation huge(&budget);
  EXPECT_FALSE(huge.Grow(UINT64_MAX));  // no overflow past the limit
  EXPECT_EQ(budget.used(), 0u);
}

struct SocketPair {
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~SocketPair() {
    close(fd[0]);
    close(fd[1]);
  }
  int fd[2];
};

TEST(MemoryBudgetTest, RecvPayloadReadsEveryByte) {
  MemoryBudget budget(8 << 20);
  SocketPair p;
  std::string sent(3 << 20, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>(i * 31 + 7);
  std::thread writer([&] { ASSERT_TRUE(SendAll(p.fd[1], sent.data(), sent.size()).ok()); });
  MemoryBudget::Reservation held(&budget);
  std::string got;
  ASSERT_TRUE(RecvPayload(p.fd[0], sent.size(), &held, &got).ok());
  writer.join();
  EXPECT_EQ(got, sent);
  EXPECT_EQ(held.bytes(), sent.size());
  EXPECT_EQ(budget.used(), sent.size());
}

// A header may claim far more than the budget: only bytes that arrived are charged, and the
// request is refused once they would not fit.
TEST(MemoryBudgetTest, AClaimedLengthCostsOnlyWhatArrived) {
  MemoryBudget budget(1 << 20);
  SocketPair p;
  std::string some(100 << 10, 'x');
  ASSERT_TRUE(SendAll(p.fd[1], some.data(), some.size()).ok());
  shutdown(p.fd[1], SHUT_WR);  // then the peer stops: a trickle that ends
  MemoryBudget::Reservation held(&budget);
  std::string got;
  absl::Status s = RecvPayload(p.fd[0], 64ull << 20, &held, &got);
  EXPECT_FALSE(s.ok());
  EXPECT_LE(budget.used(), 256u << 10) << "charged for bytes that never came";

  SocketPair q;
  std::string big(2 << 20, 'y');
  std::thread writer([&] { SendAll(q.fd[1], big.data(), big.size()).IgnoreError(); });
  MemoryBudget::Reservation other(&budget);
  std::string got2;
  absl::Status refused = RecvPayload(q.fd[0], big.size(), &other, &got2);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_EQ(other.bytes(), 0u);
  EXPECT_GE(budget.refused(), 1u);
  shutdown(q.fd[0], SHUT_RDWR);
  writer.join();
}

}  // namespace
}  // namespace mooncake
