// Replication of the master's journal over a real loopback connection: a standby that applied
// every acknowledged record holds exactly the leader's durable state, through random puts,
// completions, revokes, removals, evictions, mounts and unmounts; and WaitDurable never returns
// before the standby confirmed.
#include "mooncake/master/ha/replication.h"

#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/rng.h"
#include "mooncake/master/master_service.h"
#include "mooncake/net/socket_util.h"

namespace mooncake::ha {
namespace {

// Canonical view of a snapshot: segment ids differ between services, names and bases do not.
using Replicas = std::vector<std::tuple<std::string, uint64_t, uint64_t>>;
struct Canon {
  std::map<std::string, std::tuple<uint64_t, uint64_t, int, Replicas>> objects;
  std::set<std::tuple<std::string, uint64_t, uint64_t>> segments;
  uint64_t reserved_blocks = 0;
};

Canon Canonical(const MasterSnapshot& s) {
  Canon c;
  std::map<uint32_t, const MasterSnapshot::Segment*> by_id;
  for (const auto& seg : s.segments) {
    by_id[seg.id] = &seg;
    c.segments.insert({seg.desc.name, seg.desc.base, seg.desc.size});
  }
  for (const auto& o : s.objects) {
    Replicas reps;
    for (const auto& r : o.replicas) {
      reps.emplace_back(by_id.at(r.segment_id)->desc.name, by_id.at(r.segment_id)->desc.base,
                        r.address);
    }
    std::sort(reps.begin(), reps.end());
    c.objects[o.key] = {o.size, o.put_id, o.flags, reps};
  }
  c.reserved_blocks = s.reservations.size();
  return c;
}

struct Pair {
  ManualClock clock{1000000000};
  ReplicationLog log{&clock};
  std::unique_ptr<MasterService> leader;
  ReplicationReceiver receiver{
      &clock, [](const proto::ha::Hello& h) { return h.leader_id() == "leader" && h.term() == 7; }};

  Pair() {
    MasterServiceOptions o;
    o.journal = &log;
    o.eviction_high_watermark_ratio = 0.8;
    o.eviction_ratio = 0.2;
    o.default_kv_lease_ttl = absl::Milliseconds(1);
    o.client_ttl = absl::Hours(1000);  // segments go by unmount only
    leader = std::make_unique<MasterService>(o, &clock);
    EXPECT_TRUE(receiver.Listen("127.0.0.1", 0).ok());
  }

  void Connect(const std::string& leader_id = "leader") {
    auto fd = ConnectTcp("127.0.0.1", receiver.port(), absl::Seconds(2));
    ASSERT_TRUE(fd.ok()) << fd.status();
    proto::ha::Hello hello;
    hello.set_leader_id(leader_id);
    hello.set_term(7);
    log.AddLink("standby", *fd, hello, leader.get());
  }

  // Waits for the link to confirm the snapshot and makes it count for WaitDurable.
  void Join() {
    for (int i = 0; i < 2000; ++i) {
      auto links = log.Links();
      if (!links.empty() && links[0].snapshot_acked && links[0].acked >= links[0].snapshot_seq) {
        log.Join("standby");
        log.MarkInSync("standby");
        return;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    FAIL() << "the standby never confirmed the snapshot";
  }
};

ClientId Client(int i) { return ClientId{0x100u + static_cast<uint64_t>(i), 1}; }

TEST(ReplicationTest, StandbyHoldsTheLeadersStateThroughRandomChanges) {
  Pair p;
  p.log.Open();
  // Some state before the standby connects: it arrives as the snapshot.
  ASSERT_TRUE(p.leader->MountSegment(Client(0), {"node0", 1 << 20, 1 << 20, 1}).ok());
  std::vector<absl::string_view> first = {"before"};
  std::vector<uint64_t> first_size = {4096};
  ASSERT_TRUE(p.leader->BatchPutStart(first, first_size, ReplicateConfig{}).ok());
  ASSERT_TRUE(p.leader->BatchPutEnd(first).ok());
  p.Connect();
  p.Join();

  Rng rng(42);
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) keys.push_back("key" + std::to_string(i));
  int segments = 1;
  for (int step = 0; step < 3000; ++step) {
    std::vector<absl::string_view> batch;
    std::vector<uint64_t> sizes;
    const int n = 1 + static_cast<int>(rng.Uniform(8));
    for (int i = 0; i < n; ++i) {
      batch.push_back(keys[rng.Uniform(keys.size())]);
      sizes.push_back(64 + rng.Uniform(60000));
    }
    const uint64_t op = rng.Uniform(100);
    if (op < 35) {
      ReplicateConfig config;
      config.replica_num = 1 + static_cast<int>(rng.Uniform(2));
      config.with_soft_pin = rng.Uniform(4) == 0;
      (void)p.leader->BatchPutStart(batch, sizes, config);
    } else if (op < 65) {
      (void)p.leader->BatchPutEnd(batch);
    } else if (op < 72) {
      (void)p.leader->BatchPutRevoke(batch, {}, /*quarantine=*/rng.Uniform(2) == 0);
    } else if (op < 82) {
      (void)p.leader->BatchRemove(batch, /*force=*/rng.Uniform(2) == 0);
    } else if (op < 88 && segments < 6) {
      ASSERT_TRUE(p.leader
                      ->MountSegment(Client(segments),
                                     {"node" + std::to_string(segments),
                                      static_cast<uint64_t>(segments + 1) << 24, 1 << 19, 1})
                      .ok());
      ++segments;
    } else if (op < 90 && segments > 2) {
      --segments;
      ASSERT_TRUE(p.leader
                      ->UnmountSegment(Client(segments), "node" + std::to_string(segments),
                                       static_cast<uint64_t>(segments + 1) << 24)
                      .ok());
    } else {
      p.clock.Advance(absl::Seconds(rng.Uniform(40)));  // leases end, puts are discarded
      p.leader->Tick();
    }
    if (step % 50 == 0) {
      ASSERT_TRUE(p.log.WaitDurable(p.log.tail(), absl::Now() + absl::Seconds(5)).ok());
    }
  }
  ASSERT_TRUE(p.log.WaitDurable(p.log.tail(), absl::Now() + absl::Seconds(5)).ok());
  ASSERT_TRUE(p.leader->CheckInvariants().ok());
  const MasterSnapshot on_leader = p.leader->Snapshot();
  ASSERT_GT(on_leader.objects.size(), 5u);
  const MasterSnapshot on_standby = p.receiver.TakeState();
  const Canon a = Canonical(on_leader);
  const Canon b = Canonical(on_standby);
  EXPECT_EQ(a.segments, b.segments);
  EXPECT_EQ(a.objects, b.objects);
  // The standby counts reservations from when it applied them, so it may hold them longer.
  EXPECT_GE(b.reserved_blocks, a.reserved_blocks);

  // The standby's state restores into a working master: same objects, consistent allocators.
  MasterService restored(MasterServiceOptions{}, &p.clock);
  ASSERT_TRUE(restored.Restore(on_standby).ok());
  EXPECT_TRUE(restored.CheckInvariants().ok()) << restored.CheckInvariants();
  EXPECT_EQ(Canonical(restored.Snapshot()).objects, a.objects);
  // Complete objects are readable and leased; new puts never land on restored space.
  std::vector<absl::string_view> complete;
  for (const auto& o : on_leader.objects) {
    if (o.flags & kObjectComplete) complete.push_back(o.key);
  }
  auto exist = restored.BatchExistKey(complete);
  ASSERT_TRUE(exist.ok());
  for (ErrorCode code : *exist) EXPECT_EQ(code, ErrorCode::OK);
  std::vector<absl::string_view> fresh = {"fresh"};
  std::vector<uint64_t> fresh_size = {4096};
  (void)restored.BatchPutStart(fresh, fresh_size, ReplicateConfig{});
  EXPECT_TRUE(restored.CheckInvariants().ok());
}

TEST(ReplicationTest, WaitDurableWaitsForTheStandbysConfirmation) {
  // A "standby" that accepts the stream and reads it but never confirms: a leader that answered
  // its client now would lose that answer in a failover (the planted bug "acknowledge before
  // replicating"). WaitDurable must not return OK.
  ManualClock clock(1);
  ReplicationLog log(&clock);
  log.Open();
  MasterServiceOptions o;
  o.journal = &log;
  MasterService leader(o, &clock);
  int port = 0;
  auto listen_fd = ListenTcp("127.0.0.1", 0, &port);
  ASSERT_TRUE(listen_fd.ok());
  auto fd = ConnectTcp("127.0.0.1", port, absl::Seconds(2));
  ASSERT_TRUE(fd.ok());
  const int silent = ::accept(*listen_fd, nullptr, nullptr);
  ASSERT_GE(silent, 0);
  log.AddLink("silent", *fd, proto::ha::Hello(), &leader);
  log.Join("silent");  // counts from now on
  ASSERT_TRUE(leader.MountSegment(Client(1), {"n", 1 << 20, 1 << 20, 1}).ok());
  auto waited = log.WaitDurable(log.tail(), absl::Now() + absl::Milliseconds(200));
  EXPECT_EQ(ToErrorCode(waited), ErrorCode::RPC_TIMEOUT) << waited;
  // Once the coordinator drops the link (after taking it out of the in-sync set), it is durable.
  log.RemoveLink("silent");
  EXPECT_TRUE(log.WaitDurable(log.tail(), absl::Now() + absl::Milliseconds(200)).ok());
  // A log that is closed (the leader stepped down) fails its waiters.
  log.Close();
  EXPECT_EQ(ToErrorCode(log.WaitDurable(log.tail() + 1, absl::Now() + absl::Seconds(1))),
            ErrorCode::UNAVAILABLE_IN_CURRENT_STATUS);
  ::close(silent);
  ::close(*listen_fd);
}

TEST(ReplicationTest, StandbyRefusesAStreamFromAnotherLeader) {
  Pair p;
  p.log.Open();
  p.Connect("impostor");
  for (int i = 0; i < 1000 && !p.log.Links()[0].failed; ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_TRUE(p.log.Links()[0].failed);
  EXPECT_EQ(p.receiver.held().leader_id, "");
}

}  // namespace
}  // namespace mooncake::ha
