// Randomized check of SimVerbs against the RC contract, over many seeds: random WRITEs and READs
// (sizes 0..300 KiB, one to three SGEs, some with a bad rkey), on random topologies with link loss,
// NIC flaps, latency and rate changes and responder host crashes. For every seed:
//   - every request completes exactly once, and per QP in posting order;
//   - per QP: successes, then at most one real error, then only flushes;
//   - a successful WRITE left exactly its bytes in the remote region, a successful READ brought
//     back exactly the remote bytes;
//   - a bad rkey never gives SUCCESS.
// The seed count comes from FUZZ_SEEDS (the long, manual target sets it higher).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "sim/verbs/verbs_test_util.h"
#include "sim/verbs/world.h"

#ifndef FUZZ_SEEDS
#define FUZZ_SEEDS 150
#endif

namespace sim {
namespace {

constexpr int kAllAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
constexpr uint32_t kSlot = 320 << 10;  // one op's region on each side

struct Op {
  uint64_t wr_id;
  bool write;
  bool bad_key;
  std::vector<uint32_t> sge_lengths;
  uint32_t length;
  size_t slot;  // region index on both sides
};

struct Lane {  // one QP from the requester host to one responder NIC
  testing::RcEnd* req_end;
  ibv_qp* qp;
  HostId responder;
  std::vector<uint8_t>* local;   // requester memory
  std::vector<uint8_t>* remote;  // responder memory
  ibv_mr* lmr;
  ibv_mr* rmr;
  std::vector<Op> ops;
};

// Outcome counts over all seeds, printed at the end to show what the run exercised.
std::map<int, uint64_t> g_outcomes;
uint64_t g_retransmissions = 0;

void RunSeed(uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (replay: FUZZ_SEEDS and this seed)");
  World world(seed);
  mooncake::Rng& rng = world.sim().rng();
  const int responders = 1 + static_cast<int>(rng.Uniform(2));
  const int nics = 1 + static_cast<int>(rng.Uniform(2));
  auto spec = [&](int i) {
    NicSpec s;
    s.name = "erdma_" + std::to_string(i);
    s.rate_bps = rng.Bernoulli(0.5) ? 200e9 : 100e9;
    s.link_latency = rng.UniformRange(500, 5000);
    s.mtu = rng.Bernoulli(0.8) ? 4096 : 1024;
    return s;
  };
  const HostId req = world.network().AddHost("req");
  for (int i = 0; i < nics; ++i) world.network().AddNic(req, spec(i));
  std::vector<HostId> resp_hosts;
  for (int r = 0; r < responders; ++r) {
    const HostId h = world.network().AddHost("resp" + std::to_string(r));
    for (int i = 0; i < nics; ++i) world.network().AddNic(h, spec(i));
    resp_hosts.push_back(h);
  }
  // Faults: loss everywhere sometimes, plus a random schedule (responder crashes only: the
  // requester's own crash would leave nobody to poll).
  if (rng.Bernoulli(0.5)) {
    for (NicId n = 0; n < world.network().num_nics(); ++n) {
      world.network().SetLinkLoss(n, rng.UniformDouble() * 2e-3);
    }
  }
  RandomFaultOptions f;
  f.count = static_cast<int>(rng.Uniform(5));
  f.end = 30 * kMillisecond;
  f.min_duration = 100 * kMicrosecond;
  f.max_duration = 60 * kMillisecond;
  f.max_loss = 0.02;
  f.weight_host_crash = 0.3;
  f.hosts = resp_hosts;
  world.network().RandomFaults(f);

  testing::ConnectOptions co;
  co.timeout = 10;  // 4.2 ms per try: keeps retry-exceeded within simulated milliseconds
  co.retry_cnt = static_cast<uint8_t>(rng.UniformRange(1, 7));
  co.max_rd_atomic = static_cast<uint8_t>(rng.UniformRange(1, 16));
  co.max_dest_rd_atomic = static_cast<uint8_t>(rng.UniformRange(1, 16));
  co.mtu = rng.Bernoulli(0.5) ? IBV_MTU_4096 : IBV_MTU_1024;

  std::vector<std::unique_ptr<testing::RcEnd>> ends;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> memory;
  std::vector<Lane> lanes;
  testing::EndOptions eo;
  eo.max_send_wr = 64;
  for (HostId h : resp_hosts) {
    for (int i = 0; i < nics; ++i) {
      const std::string name = "erdma_" + std::to_string(i);
      ends.push_back(
          std::make_unique<testing::RcEnd>(testing::OpenEnd(world.verbs(req), name, eo)));
      testing::RcEnd* a = ends.back().get();
      ends.push_back(std::make_unique<testing::RcEnd>(testing::OpenEnd(world.verbs(h), name, eo)));
      testing::RcEnd* b = ends.back().get();
      co.psn_a = static_cast<uint32_t>(rng.Uniform(1 << 24));
      co.psn_b = static_cast<uint32_t>(rng.Uniform(1 << 24));
      ASSERT_TRUE(testing::Connect(*a, *b, co).ok());
      const int n_ops = 1 + static_cast<int>(rng.Uniform(12));
      memory.push_back(std::make_unique<std::vector<uint8_t>>(n_ops * size_t{kSlot}));
      std::vector<uint8_t>* local = memory.back().get();
      memory.push_back(std::make_unique<std::vector<uint8_t>>(n_ops * size_t{kSlot}));
      std::vector<uint8_t>* remote = memory.back().get();
      for (size_t k = 0; k < local->size(); ++k) {
        (*local)[k] = static_cast<uint8_t>(rng.Next64());
        (*remote)[k] = static_cast<uint8_t>(k * 7 + 3);
      }
      Lane lane{a,
                a->qp,
                h,
                local,
                remote,
                *a->verbs->RegMr(a->pd, local->data(), local->size(), kAllAccess),
                *b->verbs->RegMr(b->pd, remote->data(), remote->size(), kAllAccess),
                {}};
      for (int k = 0; k < n_ops; ++k) {
        Op op;
        op.wr_id = (lanes.size() << 16) | k;
        op.write = rng.Bernoulli(0.5);
        op.bad_key = rng.Bernoulli(0.03);
        op.slot = k;
        op.length = 0;
        const int sges = 1 + static_cast<int>(rng.Uniform(3));
        for (int s = 0; s < sges; ++s) {
          const uint32_t len =
              rng.Bernoulli(0.1) ? 0 : static_cast<uint32_t>(rng.Uniform(kSlot / 3));
          op.sge_lengths.push_back(len);
          op.length += len;
        }
        lane.ops.push_back(op);
      }
      lanes.push_back(std::move(lane));
    }
  }
  // Snapshots to check against: what a WRITE sends and what a READ must bring back.
  std::vector<std::vector<uint8_t>> local_before, remote_before;
  for (const Lane& l : lanes) {
    local_before.push_back(*l.local);
    remote_before.push_back(*l.remote);
  }
  // Post everything (64 per QP at most: the send queue never fills).
  for (Lane& l : lanes) {
    for (const Op& op : l.ops) {
      ibv_sge sge[3];
      uint32_t at = 0;
      for (size_t s = 0; s < op.sge_lengths.size(); ++s) {
        sge[s] = ibv_sge{reinterpret_cast<uint64_t>(l.local->data() + op.slot * kSlot + at),
                         op.sge_lengths[s], l.lmr->lkey};
        at += op.sge_lengths[s];
      }
      ibv_send_wr wr;
      std::memset(&wr, 0, sizeof(wr));
      wr.wr_id = op.wr_id;
      wr.sg_list = sge;
      wr.num_sge = static_cast<int>(op.sge_lengths.size());
      wr.opcode = op.write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
      wr.send_flags = IBV_SEND_SIGNALED;
      wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(l.remote->data() + op.slot * kSlot);
      wr.wr.rdma.rkey = op.bad_key ? l.rmr->rkey ^ 0x7000 : l.rmr->rkey;
      ibv_send_wr* bad = nullptr;
      ASSERT_EQ(l.req_end->verbs->PostSend(l.qp, &wr, &bad), 0);
    }
  }
  // Poll every requester CQ after each event until every request has completed.
  size_t expected = 0;
  for (const Lane& l : lanes) expected += l.ops.size();
  std::map<uint64_t, int> status_of;                // wr_id -> status
  std::map<uint32_t, std::vector<uint64_t>> order;  // qp_num -> wr_ids in completion order
  size_t seen = 0;
  const bool all = world.RunFor(
      [&] {
        for (size_t e = 0; e < ends.size(); e += 2) {
          for (const ibv_wc& wc : testing::PollAll(*ends[e])) {
            ++seen;
            EXPECT_TRUE(status_of.emplace(wc.wr_id, wc.status).second)
                << "wr " << wc.wr_id << " completed twice";
            order[wc.qp_num].push_back(wc.wr_id);
          }
        }
        return seen >= expected;
      },
      20 * kSecond);
  ASSERT_TRUE(all) << "only " << seen << " of " << expected << " requests completed";
  for (const auto& [wr, status] : status_of) ++g_outcomes[status];
  g_retransmissions += world.verbs(req)->stats().retransmissions;
  // Nothing more may come.
  world.sim().RunFor(kSecond);
  for (size_t e = 0; e < ends.size(); e += 2) {
    EXPECT_EQ(testing::PollAll(*ends[e]).size(), 0u);
  }

  for (size_t li = 0; li < lanes.size(); ++li) {
    const Lane& l = lanes[li];
    const std::vector<uint64_t>& got = order[l.qp->qp_num];
    ASSERT_EQ(got.size(), l.ops.size());
    if (std::getenv("FUZZ_VERBOSE")) {
      for (const Op& op : l.ops) {
        std::fprintf(stderr, "lane %zu wr %lx %s len %u bad %d -> %d\n", li,
                     (unsigned long)op.wr_id, op.write ? "W" : "R", op.length, op.bad_key,
                     status_of[op.wr_id]);
      }
    }
    int phase = 0;  // 0: successes, 1: after the first error (flushes only)
    for (size_t k = 0; k < l.ops.size(); ++k) {
      const Op& op = l.ops[k];
      ASSERT_EQ(got[k], op.wr_id) << "completions out of posting order";
      const int status = status_of[op.wr_id];
      if (phase == 1) {
        EXPECT_EQ(status, IBV_WC_WR_FLUSH_ERR) << "wr " << op.wr_id;
        continue;
      }
      if (status != IBV_WC_SUCCESS) {
        phase = 1;
        EXPECT_TRUE(status == IBV_WC_REM_ACCESS_ERR || status == IBV_WC_RETRY_EXC_ERR)
            << "wr " << op.wr_id << ": " << testing::StatusName(static_cast<ibv_wc_status>(status));
        if (status == IBV_WC_REM_ACCESS_ERR) {
          EXPECT_TRUE(op.bad_key) << "wr " << op.wr_id;
        }
        continue;
      }
      EXPECT_FALSE(op.bad_key && op.length > 0) << "bad rkey succeeded, wr " << op.wr_id;
      const size_t base = op.slot * kSlot;
      if (op.write) {
        EXPECT_EQ(std::memcmp(l.remote->data() + base, local_before[li].data() + base, op.length),
                  0)
            << "WRITE wr " << op.wr_id << " length " << op.length;
      } else {
        EXPECT_EQ(std::memcmp(l.local->data() + base, remote_before[li].data() + base, op.length),
                  0)
            << "READ wr " << op.wr_id << " length " << op.length;
      }
    }
  }
}

TEST(SimVerbsFuzzTest, RcContractHoldsOverManySeeds) {
  for (uint64_t seed = 1; seed <= FUZZ_SEEDS; ++seed) {
    RunSeed(seed);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "first failing seed: " << seed;
      return;
    }
  }
  std::printf(
      "%d seeds: success %lu, remote access error %lu, retry exceeded %lu, flushed %lu; "
      "%lu retransmissions\n",
      FUZZ_SEEDS, static_cast<unsigned long>(g_outcomes[IBV_WC_SUCCESS]),
      static_cast<unsigned long>(g_outcomes[IBV_WC_REM_ACCESS_ERR]),
      static_cast<unsigned long>(g_outcomes[IBV_WC_RETRY_EXC_ERR]),
      static_cast<unsigned long>(g_outcomes[IBV_WC_WR_FLUSH_ERR]),
      static_cast<unsigned long>(g_retransmissions));
  // The run must exercise every outcome, or it checks less than it claims.
  EXPECT_GT(g_outcomes[IBV_WC_SUCCESS], 0u);
  EXPECT_GT(g_outcomes[IBV_WC_REM_ACCESS_ERR], 0u);
  EXPECT_GT(g_outcomes[IBV_WC_RETRY_EXC_ERR], 0u);
  EXPECT_GT(g_outcomes[IBV_WC_WR_FLUSH_ERR], 0u);
  EXPECT_GT(g_retransmissions, 0u);
}

}  // namespace
}  // namespace sim
