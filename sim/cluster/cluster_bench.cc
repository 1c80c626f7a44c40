// cluster_bench: the cluster throughput sweep (cluster_throughput.h) over page sizes and cluster
// sizes; one line per point, a table, and (with --csv) the numbers for tools/plot_cluster_bench.
//
//   bazel run //sim:cluster_bench                                  # the default sweep
//   bazel run //sim:cluster_bench -- --hosts=16 --pages_kib=4096  # one point
//   bazel run //sim:cluster_bench -- --csv=/tmp/cluster.csv
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "mooncake/common/logging.h"
#include "mooncake/common/mutex_mode.h"
#include "sim/cluster/cluster_throughput.h"

ABSL_FLAG(std::string, hosts, "4,16,64", "cluster sizes to sweep (comma-separated)");
ABSL_FLAG(std::string, pages_kib, "64,1024,4096", "page sizes in KiB to sweep (comma-separated)");
ABSL_FLAG(int, ranks, 4, "TP ranks (store clients) per host");
ABSL_FLAG(int, nics, 4, "NICs per host");
ABSL_FLAG(double, nic_gbps, 200, "line rate of each NIC in Gbit/s");
ABSL_FLAG(bool, mla, false, "MLA keys (one per page, shared by the ranks) instead of MHA _k/_v");
ABSL_FLAG(int, segment_pages, 2048, "pages each client's segment holds");
ABSL_FLAG(int64_t, master_latency_us, 50, "one-way client <-> master latency in us");
ABSL_FLAG(int, master_threads, 8, "modelled master workers");
ABSL_FLAG(int64_t, master_per_call_ns, 10000, "modelled master service time per call, ns");
ABSL_FLAG(int64_t, master_per_key_ns, 300, "modelled master service time per key, ns");
ABSL_FLAG(int64_t, warmup_ms, 20, "simulated warm-up before the window");
ABSL_FLAG(int64_t, measure_ms, 50, "simulated measurement window");
ABSL_FLAG(uint64_t, seed, 1, "seed");
ABSL_FLAG(int64_t, lease_ms, 500, "read lease the master grants (default_kv_lease_ttl)");
ABSL_FLAG(bool, replica_cache, true,
          "exist brings back replica lists for the get after it (false: two master calls per get)");
ABSL_FLAG(std::string, csv, "", "write the results here as CSV");

namespace {

std::vector<int64_t> ParseList(const std::string& s) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) {
      fprintf(stderr, "not a positive number: '%s'\n", std::string(part).c_str());
      exit(2);
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  mooncake::UseProductionMutexMode();
  absl::SetProgramUsageMessage("Cluster throughput of the whole store in the simulator.");
  absl::ParseCommandLine(argc, argv);
  mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
  const std::vector<int64_t> hosts = ParseList(absl::GetFlag(FLAGS_hosts));
  const std::vector<int64_t> pages = ParseList(absl::GetFlag(FLAGS_pages_kib));
  std::vector<sim::ThroughputResult> results;
  FILE* csv = nullptr;
  if (!absl::GetFlag(FLAGS_csv).empty()) {
    csv = fopen(absl::GetFlag(FLAGS_csv).c_str(), "w");
    if (csv == nullptr) {
      perror("csv");
      return 2;
    }
    fprintf(csv,
            "hosts,ranks,nics,nic_gbps,page_bytes,line_rate,gbytes_per_s,p50_ms,p99_ms,"
            "calls_per_get_batch,calls_per_put_batch,master_wall_us_per_call,"
            "master_utilization,master_share,nic_skew,key_errors,batches\n");
  }
  const size_t total = hosts.size() * pages.size();
  for (int64_t page : pages) {
    for (int64_t h : hosts) {
      sim::ThroughputOptions o;
      o.seed = absl::GetFlag(FLAGS_seed);
      o.hosts = static_cast<int>(h);
      o.ranks = absl::GetFlag(FLAGS_ranks);
      o.nics = absl::GetFlag(FLAGS_nics);
      o.nic_gbps = absl::GetFlag(FLAGS_nic_gbps);
      o.page_bytes = static_cast<uint64_t>(page) << 10;
      o.mla = absl::GetFlag(FLAGS_mla);
      o.lease = absl::GetFlag(FLAGS_lease_ms) * sim::kMillisecond;
      o.replica_cache = absl::GetFlag(FLAGS_replica_cache);
      o.segment_pages = absl::GetFlag(FLAGS_segment_pages);
      o.master_latency = absl::GetFlag(FLAGS_master_latency_us) * sim::kMicrosecond;
      o.master_threads = absl::GetFlag(FLAGS_master_threads);
      o.master_per_call = absl::GetFlag(FLAGS_master_per_call_ns);
      o.master_per_key = absl::GetFlag(FLAGS_master_per_key_ns);
      o.warmup = absl::GetFlag(FLAGS_warmup_ms) * sim::kMillisecond;
      o.measure = absl::GetFlag(FLAGS_measure_ms) * sim::kMillisecond;
      fprintf(stderr, "[%zu/%zu] hosts=%d page=%lldKiB ...\n", results.size() + 1, total, o.hosts,
              static_cast<long long>(page));
      const sim::ThroughputResult r = sim::RunClusterThroughput(o);
      fprintf(stderr,
              "  %.1f%% of line rate (%.1f GB/s), p50 %.2f ms p99 %.2f ms, %llu batches; master "
              "calls per get batch %.2f, per put batch %.2f; master %.2f us wall per call "
              "(%.0f ns per key), modelled %.2f us, %.0f%% busy; master wait %.0f%% of a batch; "
              "NIC skew %.2f; %llu key errors, %llu evicted; %.1f s wall\n  bound: %s\n",
              100 * r.line_rate, r.gbytes_per_s, r.p50_batch_ms, r.p99_batch_ms,
              static_cast<unsigned long long>(r.batches), r.master_calls_per_get_batch,
              r.master_calls_per_put_batch, r.master_wall_us_per_call, r.master_wall_ns_per_key,
              r.master_modelled_us_per_call, 100 * r.master_utilization, 100 * r.master_share,
              r.nic_skew, static_cast<unsigned long long>(r.key_errors),
              static_cast<unsigned long long>(r.evicted), r.wall_seconds, r.Bound().c_str());
      if (!r.errors.empty()) {
        fprintf(stderr, "  key errors by result:");
        for (const auto& [code, n] : r.errors) {
          fprintf(stderr, " %lld x%llu", static_cast<long long>(code),
                  static_cast<unsigned long long>(n));
        }
        fprintf(stderr, "\n");
      }
      printf("%s\n", r.Line().c_str());
      fflush(stdout);
      if (csv != nullptr) {
        fprintf(csv,
                "%d,%d,%d,%.0f,%llu,%.4f,%.2f,%.3f,%.3f,%.3f,%.3f,%.3f,%.4f,%.4f,%.3f,%llu,%llu\n",
                o.hosts, o.ranks, o.nics, o.nic_gbps, static_cast<unsigned long long>(o.page_bytes),
                r.line_rate, r.gbytes_per_s, r.p50_batch_ms, r.p99_batch_ms,
                r.master_calls_per_get_batch, r.master_calls_per_put_batch,
                r.master_wall_us_per_call, r.master_utilization, r.master_share, r.nic_skew,
                static_cast<unsigned long long>(r.key_errors),
                static_cast<unsigned long long>(r.batches));
        fflush(csv);
      }
      results.push_back(r);
    }
  }
  if (csv != nullptr) fclose(csv);
  return 0;
}
