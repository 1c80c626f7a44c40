#include "sim/rdma/rdma_scenarios.h"

#include <string.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/rng.h"
#include "sim/rdma/rdma_cluster.h"

namespace sim {
namespace {

using mooncake::TransferBatch;

struct Timer {
  absl::Time wall = absl::Now();
  SimTime sim_start;
};

void Finish(RdmaCluster& c, const Timer& t, ScenarioResult* r) {
  r->trace_hash = c.world().sim().trace_hash();
  r->events = c.world().sim().events_executed();
  r->simulated_seconds = static_cast<double>(c.world().sim().Now() - t.sim_start) / kSecond;
  r->wall_seconds = absl::ToDoubleSeconds(absl::Now() - t.wall);
}

uint8_t Pattern(uint64_t seed, int host, uint64_t offset) {
  uint64_t x = (seed * 0x9e3779b97f4a7c15ull) ^ (static_cast<uint64_t>(host) << 56) ^ offset;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  return static_cast<uint8_t>(x >> 40);
}

void FillPattern(RdmaCluster& c, uint64_t seed, int host, uint64_t from, uint64_t len) {
  for (uint64_t i = from; i < from + len; ++i) c.memory(host)[i] = Pattern(seed, host, i);
}

std::string RailReport(RdmaCluster& c, int from, int to) {
  std::string out;
  for (const auto& s : c.transport(from).Stats(c.name(to))) {
    absl::StrAppendFormat(&out, "  rail %s->%s: %.1f MiB, %u slices, %u failures%s\n", s.local_nic,
                          s.remote_nic, s.bytes / 1048576.0, s.slices, s.failures,
                          s.paused ? " (paused)" : "");
  }
  return out;
}

}  // namespace

ScenarioResult StripingScenario(uint64_t seed, int nics, uint64_t bytes, bool read) {
  ScenarioResult r;
  RdmaClusterOptions o;
  o.seed = seed;
  o.copy_data = false;
  o.nics.clear();
  for (int i = 0; i < nics; ++i) o.nics.push_back(absl::StrCat("erdma_", i));
  o.memory_per_host = bytes;
  RdmaCluster c(o);
  if (absl::Status s = c.Init(); !s.ok()) {
    r.report = s.ToString();
    return r;
  }
  const uint64_t chunk = 4 << 20;
  const int n = static_cast<int>(bytes / chunk);
  auto batch = std::make_shared<TransferBatch>(n);
  Timer t{absl::Now(), c.world().sim().Now()};
  for (int i = 0; i < n; ++i) {
    c.transport(0).Submit(batch, i, !read, c.addr(0, i * chunk), c.addr(1, i * chunk), chunk,
                          c.descriptor(1));
  }
  bool done = c.RunUntilDone(*batch, 10 * kSecond);
  const SimTime elapsed = c.world().sim().Now() - t.sim_start;
  Finish(c, t, &r);
  r.requests = n;
  for (int i = 0; i < n; ++i) r.failed_requests += !batch->status(i).ok();
  const double line = nics * o.nic.rate_bps / 8;  // bytes per second
  r.efficiency = done ? (bytes / (static_cast<double>(elapsed) / kSecond)) / line : 0;
  r.ok = done && r.failed_requests == 0;
  r.report = absl::StrFormat(
      "striping %s: %d x %.0f Gbps NICs, %s %.0f MiB in %.3f ms: %.1f GB/s = %.1f%% of the "
      "aggregate line rate\n%s",
      read ? "READ" : "WRITE", nics, o.nic.rate_bps / 1e9, done ? "moved" : "DID NOT FINISH",
      bytes / 1048576.0, static_cast<double>(elapsed) / kMillisecond,
      bytes / (static_cast<double>(elapsed) / kSecond) / 1e9, 100 * r.efficiency,
      RailReport(c, 0, 1));
  return r;
}

ScenarioResult FailoverScenario(uint64_t seed, SimVerbsOptions::LocalPortDown local_port_down) {
  ScenarioResult r;
  RdmaClusterOptions o;
  o.seed = seed;
  o.local_port_down = local_port_down;
  o.memory_per_host = 96 << 20;
  RdmaCluster c(o);
  if (absl::Status s = c.Init(); !s.ok()) {
    r.report = s.ToString();
    return r;
  }
  Timer t{absl::Now(), c.world().sim().Now()};
  FillPattern(c, seed, 0, 0, 32 << 20);
  Network& net = c.world().network();
  const NicId victim = net.FindNic(c.host_id(0), "erdma_1");
  const SimTime now = c.world().sim().Now();
  net.ScheduleNicDown(victim, now + 200 * kMicrosecond);
  net.ScheduleNicUp(victim, now + 800 * kMillisecond);
  // 32 MiB in 16 requests: the NIC dies with slices in flight on it.
  const int n = 16;
  const uint64_t each = 2 << 20;
  auto batch = std::make_shared<TransferBatch>(n);
  for (int i = 0; i < n; ++i) {
    c.transport(0).Submit(batch, i, true, c.addr(0, i * each), c.addr(1, i * each), each,
                          c.descriptor(1));
  }
  bool done = c.RunUntilDone(*batch, 20 * kSecond);
  std::string why;
  for (int i = 0; i < n && why.empty(); ++i) {
    if (!batch->status(i).ok())
      why = absl::StrCat("request ", i, ": ", batch->status(i).ToString());
  }
  if (done && why.empty() && memcmp(c.memory(0), c.memory(1), 32 << 20) != 0) {
    why = "bytes on host1 differ from what host0 wrote";
  }
  auto during = c.transport(0).Stats(c.name(1));
  uint64_t failures = during.size() > 1 ? during[1].failures : 0;
  uint64_t rail1_before = during.size() > 1 ? during[1].bytes : 0;
  std::string report = absl::StrCat(
      "failover: erdma_1 down at +200us, up at +800ms; batch ",
      done ? "finished" : "DID NOT FINISH", " at ",
      absl::StrFormat("%.1f ms", static_cast<double>(c.world().sim().Now() - now) / kMillisecond),
      "\n", RailReport(c, 0, 1));
  if (done && why.empty() && failures == 0) why = "the failed rail recorded no failure";
  // After the NIC is back and the pause expires, a second batch must use both rails again.
  if (done && why.empty()) {
    c.world().RunFor([] { return false; }, 1500 * kMillisecond);  // past pause + probe window
    auto again = std::make_shared<TransferBatch>(n);
    for (int i = 0; i < n; ++i) {
      c.transport(0).Submit(again, i, false, c.addr(0, (48 << 20) + i * each), c.addr(1, i * each),
                            each, c.descriptor(1));
    }
    if (!c.RunUntilDone(*again, 20 * kSecond)) why = "second batch did not finish";
    for (int i = 0; i < n && why.empty(); ++i) {
      if (!again->status(i).ok()) why = absl::StrCat("second batch: ", again->status(i).ToString());
    }
    if (why.empty() && memcmp(c.memory(0), c.memory(0) + (48 << 20), 32 << 20) != 0) {
      why = "bytes read back differ";
    }
    auto after = c.transport(0).Stats(c.name(1));
    if (why.empty() && (after.size() < 2 || after[1].bytes <= rail1_before)) {
      why = "the recovered rail carried no traffic after the NIC came back";
    }
    absl::StrAppend(&report, "after recovery (READ back, verified):\n", RailReport(c, 0, 1));
  }
  Finish(c, t, &r);
  r.requests = 2 * n;
  r.ok = done && why.empty();
  r.report = report + (why.empty() ? "" : "VIOLATION: " + why + "\n");
  return r;
}

ScenarioResult AccessErrorScenario(uint64_t seed) {
  ScenarioResult r;
  RdmaClusterOptions o;
  o.seed = seed;
  o.hosts = 3;
  o.memory_per_host = 8 << 20;
  RdmaCluster c(o);
  if (absl::Status s = c.Init(); !s.ok()) {
    r.report = s.ToString();
    return r;
  }
  Timer t{absl::Now(), c.world().sim().Now()};
  FillPattern(c, seed, 0, 0, 1 << 20);
  // Warm the rails to both peers, then host1 deregisters its memory behind host0's back.
  auto warm = std::make_shared<TransferBatch>(2);
  c.transport(0).Submit(warm, 0, true, c.addr(0, 0), c.addr(1, 0), 4096, c.descriptor(1));
  c.transport(0).Submit(warm, 1, true, c.addr(0, 0), c.addr(2, 0), 4096, c.descriptor(2));
  std::string why;
  if (!c.RunUntilDone(*warm, kSecond) || !warm->status(0).ok() || !warm->status(1).ok()) {
    why = "warm-up failed";
  }
  const std::shared_ptr<const mooncake::SegmentDescriptor> stale = c.descriptor(1);
  c.transport(1).UnregisterMemory(c.addr(1, 0)).IgnoreError();
  memset(c.memory(1), 0, 1 << 20);
  auto batch = std::make_shared<TransferBatch>(2);
  c.transport(0).Submit(batch, 0, true, c.addr(0, 0), c.addr(1, 0), 1 << 20, stale);
  c.transport(0).Submit(batch, 1, true, c.addr(0, 0), c.addr(2, 0), 1 << 20, c.descriptor(2));
  bool done = c.RunUntilDone(*batch, 5 * kSecond);
  absl::Status refused = batch->status(0);
  if (why.empty() && !done) why = "batch did not finish";
  if (why.empty() && mooncake::ToErrorCode(refused) != mooncake::ErrorCode::INVALID_PARAMS) {
    why = absl::StrCat("deregistered target gave ", refused.ToString(), ", want INVALID_PARAMS");
  }
  if (why.empty() && !batch->status(1).ok()) why = "the other peer's request failed too";
  if (why.empty() && memcmp(c.memory(0), c.memory(2), 1 << 20) != 0) why = "host2 bytes wrong";
  for (int i = 4096; why.empty() && i < (1 << 20); ++i) {
    if (c.memory(1)[i] != 0) why = "bytes landed in deregistered memory";
  }
  // host1 registers again; with its new descriptor the (reconnected) rails work.
  if (why.empty()) {
    if (!c.transport(1).RegisterMemory(c.addr(1, 0), o.memory_per_host, true).ok()) {
      why = "re-register failed";
    }
    c.RefreshDescriptor(1);
    auto again = std::make_shared<TransferBatch>(1);
    c.transport(0).Submit(again, 0, true, c.addr(0, 0), c.addr(1, 0), 1 << 20, c.descriptor(1));
    if (why.empty() && (!c.RunUntilDone(*again, 5 * kSecond) || !again->status(0).ok())) {
      why = "write after re-registration failed";
    }
    if (why.empty() && memcmp(c.memory(0), c.memory(1), 1 << 20) != 0) why = "bytes differ";
  }
  Finish(c, t, &r);
  r.requests = 5;
  r.ok = why.empty();
  r.report = absl::StrCat("access_error: stale rkey refused with: ", refused.ToString(), "\n",
                          why.empty() ? "" : "VIOLATION: " + why + "\n");
  return r;
}

ScenarioResult FuzzScenario(uint64_t seed, const FuzzOptions& f) {
  ScenarioResult r;
  mooncake::Rng rng(seed);
  RdmaClusterOptions o;
  o.seed = seed;
  o.hosts = 3;
  o.nics.clear();
  const int nics = 1 + static_cast<int>(rng.Uniform(4));
  for (int i = 0; i < nics; ++i) o.nics.push_back(absl::StrCat("mlx5_", i));
  o.rdma.slice_size = uint64_t{16} << (10 + rng.Uniform(3));  // 16..64 KiB
  o.rdma.qps_per_endpoint = 1 + static_cast<int>(rng.Uniform(3));
  o.rdma.max_wr_per_qp = 4 + static_cast<int>(rng.Uniform(29));
  // Short ack timeouts and few retries make faults end in RETRY_EXC_ERR and flushes, not just
  // delays.
  o.rdma.qp_timeout = static_cast<uint8_t>(8 + rng.Uniform(7));  // 1 ms .. 67 ms per try
  o.rdma.retry_cnt = static_cast<uint8_t>(1 + rng.Uniform(7));
  o.rdma.rail_pause = (1 + static_cast<int64_t>(rng.Uniform(50))) * absl::Milliseconds(1);
  // Layout per host: [0, R) read-only pattern; [R, R + slots * S) write slots.
  const uint64_t kRead = 4 << 20, kSlot = f.max_request;
  const int slots = 2 * f.requests_per_round;
  o.memory_per_host = kRead + slots * kSlot;
  RdmaCluster c(o);
  if (absl::Status s = c.Init(); !s.ok()) {
    r.report = s.ToString();
    return r;
  }
  Timer t{absl::Now(), c.world().sim().Now()};
  for (int h = 0; h < o.hosts; ++h) FillPattern(c, seed, h, 0, kRead);
  RandomFaultOptions fo;
  fo.count = f.faults;
  fo.start = c.world().sim().Now();
  fo.end = fo.start + 100 * kMillisecond;
  fo.min_duration = 500 * kMicrosecond;
  fo.max_duration = 300 * kMillisecond;
  std::string report = absl::StrFormat(
      "fuzz seed %u: 3 hosts x %d NICs, slice %u, %d QPs x %d WRs, timeout %d, retry %d\n", seed,
      nics, o.rdma.slice_size, o.rdma.qps_per_endpoint, o.rdma.max_wr_per_qp, o.rdma.qp_timeout,
      o.rdma.retry_cnt);
  for (const Fault& fault : c.world().network().RandomFaults(fo)) {
    absl::StrAppend(&report, "  fault ", c.world().network().Describe(fault), "\n");
  }
  std::string why;
  for (int round = 0; round < f.rounds && why.empty(); ++round) {
    // Rounds start at random times so they overlap the faults in different ways.
    const SimTime idle = static_cast<SimTime>(rng.Uniform(40 * kMillisecond));
    c.world().RunFor([] { return false; }, idle);
    struct Req {
      bool write;
      int from, to;
      uint64_t local_off, remote_off, len;
    };
    std::vector<Req> reqs;
    std::vector<int> next_slot(o.hosts, 0);
    auto batch = std::make_shared<TransferBatch>(f.requests_per_round);
    for (int i = 0; i < f.requests_per_round; ++i) {
      Req q;
      q.write = rng.Bernoulli(0.5);
      q.from = static_cast<int>(rng.Uniform(o.hosts));
      q.to = (q.from + 1 + static_cast<int>(rng.Uniform(o.hosts - 1))) % o.hosts;
      q.len = 1 + rng.Uniform(f.max_request);
      // WRITE: local pattern -> a fresh slot on the peer. READ: peer pattern -> a fresh local slot.
      int owner = q.write ? q.to : q.from;
      uint64_t slot = kRead + next_slot[owner]++ * kSlot;
      uint64_t pattern_off = rng.Uniform(kRead - q.len + 1);
      q.local_off = q.write ? pattern_off : slot;
      q.remote_off = q.write ? slot : pattern_off;
      memset(c.memory(owner) + slot, 0, kSlot);
      reqs.push_back(q);
      c.transport(q.from).Submit(batch, i, q.write, c.addr(q.from, q.local_off),
                                 c.addr(q.to, q.remote_off), q.len, c.descriptor(q.to));
    }
    if (!c.RunUntilDone(*batch, 30 * kSecond)) {
      why = absl::StrCat("round ", round, ": requests still pending after 30 simulated seconds");
      break;
    }
    for (int i = 0; i < f.requests_per_round && why.empty(); ++i) {
      const Req& q = reqs[i];
      absl::Status s = batch->status(i);
      ++r.requests;
      if (!s.ok()) {
        ++r.failed_requests;
        if (mooncake::ToErrorCode(s) != mooncake::ErrorCode::TRANSFER_FAIL) {
          why = absl::StrCat("round ", round, " request ", i, " failed with ", s.ToString());
        }
        continue;
      }
      const int src_host = q.write ? q.from : q.to;
      const int dst_host = q.write ? q.to : q.from;
      const uint64_t src_off = q.write ? q.local_off : q.remote_off;
      const uint64_t dst_off = q.write ? q.remote_off : q.local_off;
      if (memcmp(c.memory(src_host) + src_off, c.memory(dst_host) + dst_off, q.len) != 0) {
        why = absl::StrFormat("round %d request %d (%s host%d->host%d, %u bytes): wrong bytes",
                              round, i, q.write ? "WRITE" : "READ", q.from, q.to, q.len);
      }
      // Nothing beyond the request's end in its slot.
      for (uint64_t b = dst_off + q.len;
           why.empty() && b < dst_off + kSlot && b < c.memory_size() && dst_off >= kRead; ++b) {
        if (c.memory(dst_host)[b] != 0) why = "bytes written past the end of a request";
      }
    }
  }
  Finish(c, t, &r);
  r.ok = why.empty();
  absl::StrAppendFormat(&report, "  %d requests, %d failed after retries, %.3f simulated s\n",
                        r.requests, r.failed_requests, r.simulated_seconds);
  r.report = report + (why.empty() ? "" : "VIOLATION: " + why + "\n");
  return r;
}

std::vector<std::string> ScenarioNames() {
  return {"striping2", "striping4", "striping8", "failover", "access_error", "fuzz"};
}

absl::StatusOr<ScenarioResult> RunScenario(const std::string& name, uint64_t seed) {
  if (name == "striping2") return StripingScenario(seed, 2, 1ull << 30, false);
  if (name == "striping4") return StripingScenario(seed, 4, 1ull << 30, false);
  if (name == "striping8") return StripingScenario(seed, 8, 2ull << 30, false);
  if (name == "failover") return FailoverScenario(seed);
  if (name == "access_error") return AccessErrorScenario(seed);
  if (name == "fuzz") return FuzzScenario(seed);
  return absl::NotFoundError(absl::StrCat("unknown scenario \"", name, "\""));
}

}  // namespace sim
