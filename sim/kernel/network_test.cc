#include "sim/kernel/network.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace sim {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// Stream sends `bytes` from one NIC to another as MTU-packet bursts and records what arrived.
class Stream : public BurstSource {
 public:
  Stream(Network* net, NicId src, NicId dst, uint64_t bytes)
      : net_(net), remaining_(bytes), mtu_(net->nic_spec(src).mtu) {
    flow_ = net->AddFlow(src, this);
    net->SetFlowDestination(flow_, dst);
  }
  void Start() { net_->KickFlow(flow_); }
  void StartAt(SimTime t) {
    net_->sim()->ScheduleAt(t, "start", [this] { Start(); });
  }

  bool PullBurst(Burst* b) override {
    if (remaining_ == 0) return false;
    const uint64_t n = std::min<uint64_t>(remaining_, net_->options().max_burst_bytes);
    b->payload_bytes = static_cast<uint32_t>(n);
    b->packets = static_cast<uint32_t>((n + mtu_ - 1) / mtu_);
    b->tag[0] = sent_++;
    remaining_ -= n;
    return true;
  }
  void OnDelivery(const Burst& b, const Delivery& d) override {
    const SimTime now = net_->sim()->Now();
    if (delivered_ == 0 && d.packets_delivered > 0) first_ = now;
    delivered_ +=
        d.packets_delivered == b.packets ? b.payload_bytes : uint64_t{d.packets_delivered} * mtu_;
    if (d.cause != DropCause::kNone) {
      ++lost_;
      causes_.push_back(d.cause);
    }
    ++bursts_;
    order_ok_ &= b.tag[0] == next_expected_++;
    last_ = now;
  }

  uint64_t delivered() const { return delivered_; }
  uint64_t lost() const { return lost_; }
  uint64_t bursts() const { return bursts_; }
  SimTime first() const { return first_; }
  SimTime last() const { return last_; }
  bool in_order() const { return order_ok_; }
  const std::vector<DropCause>& causes() const { return causes_; }

 private:
  Network* net_;
  FlowId flow_;
  uint64_t remaining_;
  uint32_t mtu_;
  uint64_t sent_ = 0, next_expected_ = 0;
  uint64_t delivered_ = 0, lost_ = 0, bursts_ = 0;
  SimTime first_ = -1, last_ = -1;
  bool order_ok_ = true;
  std::vector<DropCause> causes_;
};

// Time to move `bytes` at `bps`, in ns.
double Ns(uint64_t bytes, double bps) { return static_cast<double>(bytes) * 8e9 / bps; }

class NetworkTest : public ::testing::Test {
 protected:
  NetworkTest() : net_(&sim_) {}
  NicId AddHostWithNic(const std::string& name, double rate = 200e9,
                       SimTime latency = kMicrosecond) {
    HostId h = net_.AddHost(name);
    NicSpec spec;
    spec.name = "mlx5_0";
    spec.rate_bps = rate;
    spec.link_latency = latency;
    return net_.AddNic(h, spec);
  }
  Simulator sim_{1};
  Network net_;
};

TEST_F(NetworkTest, SmallMessagePaysLatencyAndTwoPacketTimes) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b");
  Stream s(&net_, a, b, 4096);
  s.Start();
  sim_.RunUntilIdle();
  // One packet: serialized at a's egress, path latency (1 us per link), serialized at b's ingress.
  EXPECT_NEAR(static_cast<double>(s.last()), 2 * Ns(4096, 200e9) + 2 * kMicrosecond, 2);
  EXPECT_EQ(s.delivered(), 4096u);
}

TEST_F(NetworkTest, OneFlowGetsLineRateAndLatencyIsAddedOnce) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b");
  Stream s(&net_, a, b, 100 * kMiB);
  s.Start();
  sim_.RunUntilIdle();
  const double ideal = Ns(100 * kMiB, 200e9) + Ns(4096, 200e9) + 2 * kMicrosecond;
  EXPECT_NEAR(static_cast<double>(s.last()), ideal, 2);  // exact rate, no rounding drift
  EXPECT_EQ(s.delivered(), 100 * kMiB);
  EXPECT_TRUE(s.in_order());
  EXPECT_EQ(net_.nic_stats(a).tx_wire_bytes, 100 * kMiB);
  EXPECT_EQ(net_.nic_stats(b).rx_payload_bytes, 100 * kMiB);
}

TEST_F(NetworkTest, TwoFlowsIntoOnePortEachGetHalf) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b"), c = AddHostWithNic("c");
  Stream sa(&net_, a, c, 64 * kMiB), sb(&net_, b, c, 64 * kMiB);
  sa.Start();
  sb.Start();
  const double both = Ns(128 * kMiB, 200e9);
  sim_.RunUntil(static_cast<SimTime>(both / 2));
  // Halfway through, each has about a quarter of the total (half of its own).
  EXPECT_NEAR(static_cast<double>(sa.delivered()), 32.0 * kMiB, 0.03 * 32 * kMiB);
  EXPECT_NEAR(static_cast<double>(sb.delivered()), 32.0 * kMiB, 0.03 * 32 * kMiB);
  sim_.RunUntilIdle();
  // Together they need c's ingress for 128 MiB; both finish near the end.
  EXPECT_NEAR(static_cast<double>(std::max(sa.last(), sb.last())), both, both * 0.01);
  EXPECT_NEAR(static_cast<double>(std::min(sa.last(), sb.last())), both, both * 0.01);
}

TEST_F(NetworkTest, TwoFlowsOutOfOnePortEachGetHalf) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b"), c = AddHostWithNic("c");
  Stream sb(&net_, a, b, 64 * kMiB), sc(&net_, a, c, 64 * kMiB);
  sb.Start();
  sc.Start();
  sim_.RunUntilIdle();
  const double both = Ns(128 * kMiB, 200e9);
  EXPECT_NEAR(static_cast<double>(sb.last()), both, both * 0.01);
  EXPECT_NEAR(static_cast<double>(sc.last()), both, both * 0.01);
}

TEST_F(NetworkTest, LateSenderIsNotStuckBehindAQueue) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b"), c = AddHostWithNic("c");
  Stream big(&net_, a, c, 256 * kMiB), late(&net_, b, c, 16 * kMiB);
  big.Start();
  late.StartAt(2 * kMillisecond);
  sim_.RunUntilIdle();
  // Sharing c's ingress, the late sender's 16 MiB take about twice their line-rate time.
  const double took = static_cast<double>(late.last() - 2 * kMillisecond);
  EXPECT_NEAR(took, 2 * Ns(16 * kMiB, 200e9), 0.05 * 2 * Ns(16 * kMiB, 200e9));
  EXPECT_NEAR(static_cast<double>(big.last()), Ns(272 * kMiB, 200e9), 0.01 * Ns(272 * kMiB, 200e9));
}

TEST_F(NetworkTest, SlowSendersShareAFastReceiver) {
  NicId a = AddHostWithNic("a", 100e9), b = AddHostWithNic("b", 100e9);
  NicId c = AddHostWithNic("c", 200e9);
  Stream sa(&net_, a, c, 32 * kMiB), sb(&net_, b, c, 32 * kMiB);
  sa.Start();
  sb.Start();
  sim_.RunUntilIdle();
  // Each runs at its own 100 Gbps: the 200 Gbps ingress takes both.
  const double alone = Ns(32 * kMiB, 100e9);
  EXPECT_NEAR(static_cast<double>(sa.last()), alone, alone * 0.01);
  EXPECT_NEAR(static_cast<double>(sb.last()), alone, alone * 0.01);
}

TEST_F(NetworkTest, RateChangeSlowsTheFlow) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b");
  Stream s(&net_, a, b, 64 * kMiB);
  s.Start();
  const SimTime half = static_cast<SimTime>(Ns(32 * kMiB, 200e9));
  net_.ScheduleRate(a, 50e9, half);
  sim_.RunUntilIdle();
  const double expected = Ns(32 * kMiB, 200e9) + Ns(32 * kMiB, 50e9);
  EXPECT_NEAR(static_cast<double>(s.last()), expected, expected * 0.01);
}

TEST_F(NetworkTest, LatencyDropDoesNotReorderBursts) {
  NicId a = AddHostWithNic("a", 200e9, 50 * kMicrosecond), b = AddHostWithNic("b");
  Stream s(&net_, a, b, 8 * kMiB);
  s.Start();
  net_.ScheduleLatency(a, 100, 20 * kMicrosecond);
  sim_.RunUntilIdle();
  EXPECT_TRUE(s.in_order());
  EXPECT_EQ(s.delivered(), 8 * kMiB);
}

TEST_F(NetworkTest, NicDownLosesBurstsUntilItComesBack) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b");
  Stream s(&net_, a, b, 64 * kMiB);
  s.Start();
  net_.ScheduleNicDown(b, kMillisecond);
  net_.ScheduleNicUp(b, 2 * kMillisecond);
  sim_.RunUntilIdle();
  EXPECT_GT(s.lost(), 0u);
  EXPECT_LT(s.delivered(), 64 * kMiB);
  for (DropCause c : s.causes()) EXPECT_EQ(c, DropCause::kDestNicDown);
  // About one millisecond of traffic was lost.
  EXPECT_NEAR(static_cast<double>(64 * kMiB - s.delivered()), 200e9 / 8 * 1e-3, 0.05 * 25e6);
  EXPECT_TRUE(net_.nic_up(b));
}

TEST_F(NetworkTest, HostCrashLosesTrafficAndNotifiesListeners) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b");
  std::vector<std::pair<HostId, HostEvent>> events;
  net_.AddHostListener([&](HostId h, HostEvent e) { events.push_back({h, e}); });
  Stream s(&net_, a, b, 16 * kMiB);
  s.Start();
  net_.ScheduleHostCrash(net_.nic_host(b), 100 * kMicrosecond);
  sim_.RunUntilIdle();
  EXPECT_FALSE(net_.host_alive(net_.nic_host(b)));
  EXPECT_FALSE(net_.nic_usable(b));
  EXPECT_TRUE(net_.nic_up(b));  // the NIC itself is fine; its host is not
  EXPECT_GT(s.lost(), 0u);
  for (DropCause c : s.causes()) EXPECT_EQ(c, DropCause::kHostDown);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].second, HostEvent::kCrashed);
  net_.RestartHost(net_.nic_host(b));
  EXPECT_TRUE(net_.nic_usable(b));
  EXPECT_EQ(net_.host_incarnation(net_.nic_host(b)), 1u);
}

TEST_F(NetworkTest, LinkLossDropsPacketsAtTheConfiguredRate) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b");
  net_.SetLinkLoss(b, 0.001);
  Stream s(&net_, a, b, 640 * kMiB);  // 10240 bursts of 16 packets
  s.Start();
  sim_.RunUntilIdle();
  const double p_burst = 1 - std::pow(1 - 0.001, 16);
  EXPECT_NEAR(static_cast<double>(s.lost()) / static_cast<double>(s.bursts()), p_burst,
              0.3 * p_burst);
  for (DropCause c : s.causes()) EXPECT_EQ(c, DropCause::kLinkLoss);
}

TEST_F(NetworkTest, GidsAreUniqueAndFoundAgain) {
  NicId a = AddHostWithNic("a"), b = AddHostWithNic("b");
  EXPECT_NE(net_.nic_gid(a), net_.nic_gid(b));
  EXPECT_EQ(net_.FindNicByGid(net_.nic_gid(b)), b);
  EXPECT_EQ(net_.nic_gid(a)[0], 0xfe);
  EXPECT_EQ(net_.nic_gid(a)[1], 0x80);
  Gid unknown{};
  EXPECT_EQ(net_.FindNicByGid(unknown), kNoId);
}

std::vector<std::string> DrawFaults(uint64_t seed) {
  Simulator sim(seed);
  Network net(&sim);
  for (int h = 0; h < 3; ++h) {
    HostId host = net.AddHost("h" + std::to_string(h));
    for (int n = 0; n < 2; ++n) {
      NicSpec spec;
      spec.name = "erdma_" + std::to_string(n);
      net.AddNic(host, spec);
    }
  }
  RandomFaultOptions o;
  o.count = 20;
  o.weight_host_crash = 1;
  std::vector<std::string> out;
  for (const Fault& f : net.RandomFaults(o)) out.push_back(net.Describe(f));
  sim.RunUntilIdle();
  // Every fault heals: everything is back to its spec.
  for (NicId n = 0; n < net.num_nics(); ++n) {
    EXPECT_TRUE(net.nic_usable(n)) << n;
    EXPECT_EQ(net.nic_loss(n), 0);
    EXPECT_EQ(net.nic_spec(n).rate_bps, 200e9);
    EXPECT_EQ(net.nic_spec(n).link_latency, kMicrosecond);
  }
  return out;
}

TEST(NetworkFaultsTest, RandomFaultsAreDeterministicPerSeedAndHeal) {
  std::vector<std::string> a = DrawFaults(5), b = DrawFaults(5), c = DrawFaults(6);
  EXPECT_EQ(a.size(), 40u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

}  // namespace
}  // namespace sim
