// sim_bench: how fast the simulator runs RDMA traffic, in simulated seconds per wall second.
//
// Host a streams RDMA WRITEs (or READs) to host b over N NICs, Q QPs per NIC, each QP keeping
// `depth` requests of `msg` bytes in flight and reposting from the completion callback, like a
// transport's Poll loop. Reports the achieved bandwidth against the aggregate line rate, the
// simulator's speed, and (with --copy) the speed of the real memcpy measured in the same run as
// the baseline the copying simulator cannot beat.
//
//   bazel run -c opt //sim/verbs:sim_bench -- --nics 2 --seconds 1 --copy
//   bazel run //sim/verbs:sim_bench -- --nics 8 --loss 1e-5 --read
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sim/verbs/verbs_test_util.h"
#include "sim/verbs/world.h"

namespace {

struct Flags {
  int nics = 1;
  int qps = 2;
  int depth = 16;
  uint64_t msg = 64 << 10;
  double seconds = 1.0;
  bool copy = false;
  bool read = false;
  double loss = 0;
  uint64_t seed = 1;
};

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--nics") {
      f.nics = std::atoi(next());
    } else if (a == "--qps") {
      f.qps = std::atoi(next());
    } else if (a == "--depth") {
      f.depth = std::atoi(next());
    } else if (a == "--msg") {
      f.msg = std::strtoull(next(), nullptr, 10);
    } else if (a == "--seconds") {
      f.seconds = std::atof(next());
    } else if (a == "--copy") {
      f.copy = true;
    } else if (a == "--read") {
      f.read = true;
    } else if (a == "--loss") {
      f.loss = std::atof(next());
    } else if (a == "--seed") {
      f.seed = std::strtoull(next(), nullptr, 10);
    } else {
      std::fprintf(stderr,
                   "usage: sim_bench [--nics N] [--qps Q] [--depth D] [--msg BYTES] "
                   "[--seconds S] [--copy] [--read] [--loss P] [--seed N]\n");
      std::exit(2);
    }
  }
  return f;
}

// MemcpyGBps measures memcpy with the simulator's access pattern: `msg`-byte copies cycling over
// `pairs` (source, destination) regions of `region` bytes.
double MemcpyGBps(size_t msg, size_t region, size_t pairs) {
  std::vector<std::vector<char>> src(pairs, std::vector<char>(region, 1));
  std::vector<std::vector<char>> dst(pairs, std::vector<char>(region, 2));
  const size_t total = size_t{1} << 32;
  const auto start = std::chrono::steady_clock::now();
  size_t copied = 0, i = 0;
  while (copied < total) {
    const size_t p = i % pairs, off = (i / pairs) * msg % region;
    std::memcpy(dst[p].data() + off, src[p].data() + off, msg);
    copied += msg;
    ++i;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(copied) / s / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = Parse(argc, argv);
  sim::WorldOptions options;
  options.seed = f.seed;
  options.verbs.copy_data = f.copy;
  sim::World world(options);
  std::vector<std::string> names;
  for (int i = 0; i < f.nics; ++i) names.push_back("erdma_" + std::to_string(i));
  const sim::HostId a = world.AddHost("a", names), b = world.AddHost("b", names);
  if (f.loss > 0) {
    for (sim::NicId n = 0; n < world.network().num_nics(); ++n) {
      world.network().SetLinkLoss(n, f.loss);
    }
  }

  // Per QP: a ring of `depth` slots of `msg` bytes on each side.
  const size_t region = f.msg * f.depth;
  struct Qp {
    sim::testing::RcEnd* end;
    ibv_qp* qp;
    char* local;
    char* remote;
    ibv_mr* lmr;
    ibv_mr* rmr;
    uint64_t next = 0;
  };
  std::vector<sim::testing::RcEnd> ends_a(f.nics), ends_b(f.nics);
  std::vector<Qp> qps;
  auto alloc = [&](size_t n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) std::abort();
    if (f.copy) std::memset(p, 1, n);  // fault the pages in before timing
    return static_cast<char*>(p);
  };
  sim::testing::EndOptions eo;
  eo.max_send_wr = f.depth;
  eo.cq_entries = f.depth * f.qps + 16;
  for (int i = 0; i < f.nics; ++i) {
    ends_a[i] = sim::testing::OpenEnd(world.verbs(a), names[i], eo);
    ends_b[i] = sim::testing::OpenEnd(world.verbs(b), names[i], eo);
    for (int q = 0; q < f.qps; ++q) {
      ibv_qp* qa = q == 0 ? ends_a[i].qp : sim::testing::CreateQp(ends_a[i], eo);
      ibv_qp* qb = q == 0 ? ends_b[i].qp : sim::testing::CreateQp(ends_b[i], eo);
      if (!sim::testing::ConnectQps(ends_a[i], qa, ends_b[i], qb).ok()) std::abort();
      Qp x{&ends_a[i], qa, alloc(region), alloc(region), nullptr, nullptr};
      const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
      x.lmr = *ends_a[i].verbs->RegMr(ends_a[i].pd, x.local, region, access);
      x.rmr = *ends_b[i].verbs->RegMr(ends_b[i].pd, x.remote, region, access);
      qps.push_back(x);
    }
  }
  uint64_t completed_bytes = 0, errors = 0;
  auto post = [&](size_t index) {
    Qp& x = qps[index];
    const uint64_t slot = x.next++ % f.depth;
    sim::testing::PostRdma(*x.end, f.read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE, x.lmr,
                           x.local + slot * f.msg, static_cast<uint32_t>(f.msg), x.rmr,
                           x.remote + slot * f.msg, index, true, x.qp);
  };
  for (int i = 0; i < f.nics; ++i) {
    sim::testing::RcEnd* end = &ends_a[i];
    absl::Status set = world.verbs(a)->SetCompletionCallback(end->cq, [&, end] {
      ibv_wc wc[64];
      int n;
      while ((n = end->verbs->PollCq(end->cq, 64, wc)) > 0) {
        for (int k = 0; k < n; ++k) {
          if (wc[k].status != IBV_WC_SUCCESS) {
            ++errors;
            continue;
          }
          completed_bytes += f.msg;
          post(wc[k].wr_id);
        }
      }
    });
    if (!set.ok()) std::abort();
  }
  for (size_t q = 0; q < qps.size(); ++q) {
    for (int d = 0; d < f.depth; ++d) post(q);
  }

  const double memcpy_gbps = f.copy ? MemcpyGBps(f.msg, region, qps.size()) : 0;
  const auto start = std::chrono::steady_clock::now();
  world.sim().RunUntil(static_cast<sim::SimTime>(f.seconds * sim::kSecond));
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const double sim_s = static_cast<double>(world.sim().Now()) / sim::kSecond;
  const double gbps = completed_bytes * 8 / sim_s / 1e9;
  const double line = 200.0 * f.nics;
  const sim::SimVerbsStats& st = world.verbs(a)->stats();
  std::printf("seed %lu trace hash %016lx\n", static_cast<unsigned long>(f.seed),
              static_cast<unsigned long>(world.sim().trace_hash()));
  std::printf("%d NIC(s) x %d QPs x depth %d, %s of %lu B, loss %g, copy %s\n", f.nics, f.qps,
              f.depth, f.read ? "READs" : "WRITEs", static_cast<unsigned long>(f.msg), f.loss,
              f.copy ? "on" : "off");
  std::printf("bandwidth: %.1f Gbps of %.0f Gbps line rate (%.1f%%), %lu errors\n", gbps, line,
              100 * gbps / line, static_cast<unsigned long>(errors));
  std::printf("retransmissions %lu, ack timeouts %lu\n",
              static_cast<unsigned long>(st.retransmissions),
              static_cast<unsigned long>(st.ack_timeouts));
  std::printf(
      "simulated %.3f s in %.3f s wall: %.2f simulated s per wall s; %.2f M events/wall s\n", sim_s,
      wall, sim_s / wall, world.sim().events_executed() / wall / 1e6);
  if (f.copy) {
    const double copied_gbs = completed_bytes / wall / 1e9;
    std::printf("payload copied %.2f GB/s wall = %.0f%% of memcpy (%.2f GB/s, same run)\n",
                copied_gbs, 100 * copied_gbs / memcpy_gbps, memcpy_gbps);
  }
  return 0;
}
