#include "sim/cluster/cluster_throughput.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "sim/cluster/key_bytes.h"
#include "sim/cluster/store_cluster.h"

namespace sim {
namespace {

using mooncake::BufferRef;

std::string PageName(uint64_t bytes) {
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, "MiB");
  return absl::StrCat(bytes >> 10, "KiB");
}

class Bench {
 public:
  explicit Bench(const ThroughputOptions& o) : o_(o) {}
  ThroughputResult Run();

 private:
  // Master counters at the edges of the window.
  struct Snapshot {
    mooncake::MasterMetrics metrics;
    MasterLoad load;
    std::vector<NicStats> nics;
  };
  Snapshot Take();

  int keys_per_page() const { return o_.mla ? 1 : 2; }
  std::vector<std::string> Keys(int client, uint64_t chain) const;
  char* LoopBuffer(int client, int loop) {
    return cluster_->client(client).buffer + loop * loop_buffer_bytes_;
  }
  void Next(int client, int loop);
  void Prefetch(int client);
  void Backup(int client);
  enum class Did { kRead, kWrite, kNothing };
  void Finish(int client, int loop, SimTime start, Did did, uint64_t failed);
  // Master batch calls of one loop iteration of client 0 with nothing else in flight.
  double CallsAlone(int loop);
  void Error(int64_t code) {
    if (measuring_) ++errors_[code];
  }

  const ThroughputOptions o_;
  std::unique_ptr<StoreCluster> cluster_;
  uint64_t loop_buffer_bytes_ = 0;
  uint64_t next_chain_ = 0;
  // The hot prefixes, per rank for MHA (rank r reads rank r's keys); chains each client added.
  std::vector<std::vector<uint64_t>> hot_;
  std::vector<int> published_;
  bool measuring_ = false;
  bool stop_ = false;
  int active_ = 0;       // loops running
  int probe_left_ = -1;  // >= 0: CallsAlone is running that many more iterations
  bool probe_done_ = false;
  std::vector<SimTime> batch_times_;
  uint64_t get_batches_ = 0, put_batches_ = 0, key_errors_ = 0;
  std::map<int64_t, uint64_t> errors_;
  SimTime loop_time_ = 0;  // summed duration of the window's iterations
};

std::vector<std::string> Bench::Keys(int client, uint64_t chain) const {
  const int rank = cluster_->client(client).rank;
  std::vector<std::string> keys;
  keys.reserve(o_.pages_per_batch * keys_per_page());
  for (int p = 0; p < o_.pages_per_batch; ++p) {
    if (o_.mla) {
      keys.push_back(absl::StrCat("c", chain, "_", p));
    } else {
      keys.push_back(absl::StrCat("c", chain, "_", p, "_", rank, "_k"));
      keys.push_back(absl::StrCat("c", chain, "_", p, "_", rank, "_v"));
    }
  }
  return keys;
}

void Bench::Next(int client, int loop) {
  if (probe_left_ >= 0) {
    if (probe_left_ == 0) {
      probe_done_ = true;
      return;
    }
    --probe_left_;
  } else if (stop_) {
    --active_;
    return;
  }
  if (loop == 0) {
    Prefetch(client);
  } else {
    Backup(client);
  }
}

void Bench::Finish(int client, int loop, SimTime start, Did did, uint64_t failed) {
  const SimTime took = cluster_->sim().Now() - start;
  if (measuring_) {
    batch_times_.push_back(took);
    loop_time_ += took;
    key_errors_ += failed;
    if (did == Did::kRead) ++get_batches_;
    if (did == Did::kWrite) ++put_batches_;
  }
  Next(client, loop);
}

double Bench::CallsAlone(int loop) {
  Simulator& sim = cluster_->sim();
  const uint64_t before = cluster_->master().load().batch_calls;
  probe_done_ = false;
  probe_left_ = 1;
  Next(0, loop);
  sim.RunUntil([&] { return probe_done_; }, sim.Now() + 10 * kSecond);
  probe_left_ = -1;
  if (!probe_done_) return -1;
  return static_cast<double>(cluster_->master().load().batch_calls - before);
}

// Prefetch: which pages of a hot prefix exist, then read that prefix.
void Bench::Prefetch(int client) {
  StoreCluster::Client& c = cluster_->client(client);
  const std::vector<uint64_t>& hot = hot_[o_.mla ? 0 : c.rank];
  Simulator& sim = cluster_->sim();
  if (hot.empty()) {
    // Nothing backed up yet: look again shortly.
    sim.Schedule(100 * kMicrosecond, "bench.wait", [this, client] { Next(client, 0); });
    return;
  }
  const uint64_t chain = hot[sim.rng().Uniform(hot.size())];
  auto keys = std::make_shared<std::vector<std::string>>(Keys(client, chain));
  const SimTime start = sim.Now();
  c.core->BatchIsExist(*keys, [this, client, keys, start](std::vector<int> exists) {
    size_t prefix = 0;
    while (prefix < exists.size() && exists[prefix] == 1) ++prefix;
    // SGLang reads whole pages: a page counts only if all its keys exist.
    prefix -= prefix % keys_per_page();
    if (prefix == 0) {
      Finish(client, 0, start, Did::kNothing, 0);
      return;
    }
    keys->resize(prefix);
    char* buffer = LoopBuffer(client, 0);
    std::vector<std::vector<BufferRef>> bufs(prefix);
    for (size_t i = 0; i < prefix; ++i) bufs[i] = {{buffer + i * o_.page_bytes, o_.page_bytes}};
    cluster_->client(client).core->BatchGet(
        *keys, std::move(bufs), [this, client, keys, start, buffer](std::vector<int64_t> got) {
          uint64_t failed = 0;
          for (size_t i = 0; i < got.size(); ++i) {
            if (got[i] != static_cast<int64_t>(o_.page_bytes)) {
              ++failed;
              Error(got[i]);
            } else if (o_.verify &&
                       VerifyKeyBytes((*keys)[i], buffer + i * o_.page_bytes, o_.page_bytes) >= 0) {
              ++failed;
              Error(1);
            }
          }
          Finish(client, 0, start, Did::kRead, failed);
        });
  });
}

// Backup: which pages of a new chain exist (MLA: another rank may have written them), then write
// the missing ones.
void Bench::Backup(int client) {
  StoreCluster::Client& c = cluster_->client(client);
  Simulator& sim = cluster_->sim();
  // MLA ranks of one host write the same chain (SGLang: every rank backs up the same pages).
  uint64_t chain;
  if (o_.mla) {
    chain = (next_chain_ / o_.ranks) * 1000003 + static_cast<uint64_t>(c.host);
    if (c.rank == 0) ++next_chain_;
  } else {
    chain = next_chain_++;
  }
  auto keys = std::make_shared<std::vector<std::string>>(Keys(client, chain));
  const SimTime start = sim.Now();
  c.core->BatchIsExist(*keys, [this, client, keys, start, chain](std::vector<int> exists) {
    auto missing = std::make_shared<std::vector<std::string>>();
    char* buffer = LoopBuffer(client, 1);
    std::vector<std::vector<BufferRef>> bufs;
    for (size_t i = 0; i < keys->size(); ++i) {
      if (exists[i] == 1) continue;
      char* dst = buffer + missing->size() * o_.page_bytes;
      if (o_.verify) FillKeyBytes((*keys)[i], dst, o_.page_bytes);
      bufs.push_back({{dst, o_.page_bytes}});
      missing->push_back((*keys)[i]);
    }
    // The first chains every client backs up are the hot prefixes: read by every host's
    // prefetches from then on (so they stay leased), while later chains only fill the pool.
    auto publish = [this, client, chain] {
      const StoreCluster::Client& c = cluster_->client(client);
      if (published_[client] >= o_.hot_chains_per_client) return;
      ++published_[client];
      std::vector<uint64_t>& hot = hot_[o_.mla ? 0 : c.rank];
      if (std::find(hot.begin(), hot.end(), chain) == hot.end()) hot.push_back(chain);
    };
    if (missing->empty()) {
      publish();
      Finish(client, 1, start, Did::kNothing, 0);
      return;
    }
    cluster_->client(client).core->BatchPut(*missing, std::move(bufs), {},
                                            [this, client, start, publish](std::vector<int> rc) {
                                              uint64_t failed = 0;
                                              for (int r : rc) {
                                                if (r == 0) continue;
                                                ++failed;
                                                Error(r);
                                              }
                                              if (failed == 0) publish();
                                              Finish(client, 1, start, Did::kWrite, failed);
                                            });
  });
}

Bench::Snapshot Bench::Take() {
  Snapshot s;
  s.metrics = cluster_->master().service()->GetMetrics();
  s.load = cluster_->master().load();
  Network& net = cluster_->world().network();
  for (NicId n = 0; n < net.num_nics(); ++n) s.nics.push_back(net.nic_stats(n));
  return s;
}

ThroughputResult Bench::Run() {
  const auto wall0 = std::chrono::steady_clock::now();
  ThroughputResult r;
  r.options = o_;
  StoreClusterOptions c;
  c.seed = o_.seed;
  c.hosts = o_.hosts;
  c.ranks = o_.ranks;
  c.nics = o_.nics;
  c.nic.rate_bps = o_.nic_gbps * 1e9;
  c.copy_data = o_.verify;
  c.engine.allow_local_memcpy = o_.verify;
  // Large transfers in 256 KiB bursts: four times fewer events than the default, and still
  // finer than one page of every size swept.
  c.network.max_burst_bytes = 256 << 10;
  loop_buffer_bytes_ = static_cast<uint64_t>(o_.pages_per_batch) * keys_per_page() * o_.page_bytes;
  c.buffer_size = 2 * loop_buffer_bytes_;
  c.segment_size = static_cast<uint64_t>(o_.segment_pages) * o_.page_bytes;
  c.link.latency = o_.master_latency;
  c.link.jitter = o_.master_jitter;
  c.link.rpc_timeout = kSecond;
  c.link.service_threads = o_.master_threads;
  c.link.service_per_call = o_.master_per_call;
  c.link.service_per_key = o_.master_per_key;
  c.master.default_kv_lease_ttl = absl::Nanoseconds(o_.lease);
  c.master.client_ttl = absl::Seconds(10);
  c.put_wait_timeout = absl::Seconds(1);
  c.replica_cache_entries = o_.replica_cache ? 16384 : 0;
  cluster_ = std::make_unique<StoreCluster>(c);
  hot_.resize(o_.mla ? 1 : o_.ranks);
  published_.assign(o_.hosts * o_.ranks, 0);
  if (absl::Status s = cluster_->Start(); !s.ok()) {
    MC_LOG(ERROR) << "cluster failed to start: " << s;
    return r;
  }
  Simulator& sim = cluster_->sim();
  sim.RunFor(5 * kMillisecond);  // mounts land
  for (int i = 0; i < cluster_->num_clients(); ++i) {
    active_ += 2;
    Next(i, 1);
    Next(i, 0);
  }
  sim.RunFor(o_.warmup);
  const Snapshot before = Take();
  measuring_ = true;
  sim.RunFor(o_.measure);
  measuring_ = false;
  const Snapshot after = Take();
  stop_ = true;
  sim.RunUntil([&] { return active_ == 0; }, sim.Now() + 10 * kSecond);
  // Round trips per batch, each loop alone: a backup of a new chain, a prefetch of a hot one.
  r.master_calls_per_put_batch = CallsAlone(1);
  r.master_calls_per_get_batch = CallsAlone(0);

  const double window_s = static_cast<double>(o_.measure) / 1e9;
  Network& net = cluster_->world().network();
  double tx = 0, rate = 0, busiest = 0, total = 0;
  for (size_t n = 0; n < after.nics.size(); ++n) {
    const double t =
        static_cast<double>(after.nics[n].tx_wire_bytes - before.nics[n].tx_wire_bytes);
    const double rx =
        static_cast<double>(after.nics[n].rx_payload_bytes - before.nics[n].rx_payload_bytes);
    tx += t;
    rate += net.nic_spec(static_cast<NicId>(n)).rate_bps / 8;
    busiest = std::max(busiest, t + rx);
    total += t + rx;
  }
  r.line_rate = tx / (rate * window_s);
  r.gbytes_per_s = tx / window_s / 1e9;
  r.nic_skew = total > 0 ? busiest / (total / static_cast<double>(after.nics.size())) : 0;
  r.get_batches = get_batches_;
  r.put_batches = put_batches_;
  r.batches = get_batches_ + put_batches_;
  r.key_errors = key_errors_;
  r.errors = errors_;
  if (!batch_times_.empty()) {
    std::sort(batch_times_.begin(), batch_times_.end());
    auto pct = [&](double q) {
      const size_t i = std::min(batch_times_.size() - 1,
                                static_cast<size_t>(q * static_cast<double>(batch_times_.size())));
      return static_cast<double>(batch_times_[i]) / 1e6;
    };
    r.p50_batch_ms = pct(0.50);
    r.p99_batch_ms = pct(0.99);
  }
  const mooncake::MasterMetrics& m0 = before.metrics;
  const mooncake::MasterMetrics& m1 = after.metrics;
  const MasterLoad& l0 = before.load;
  const MasterLoad& l1 = after.load;
  const double calls = static_cast<double>(l1.calls - l0.calls);
  const double keys = static_cast<double>(l1.keys - l0.keys);
  if (calls > 0) {
    const double wall = static_cast<double>(l1.wall_ns - l0.wall_ns);
    r.master_wall_us_per_call = wall / calls / 1e3;
    r.master_wall_ns_per_key = keys > 0 ? wall / keys : 0;
    r.master_modelled_us_per_call = static_cast<double>(l1.busy - l0.busy) / calls / 1e3;
  }
  r.master_utilization = static_cast<double>(l1.busy - l0.busy) /
                         (static_cast<double>(std::max(1, o_.master_threads)) * o_.measure);
  if (loop_time_ > 0) {
    r.master_share = static_cast<double>(l1.waited - l0.waited) / static_cast<double>(loop_time_);
  }
  r.evicted = m1.evicted_objects - m0.evicted_objects;
  cluster_.reset();
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return r;
}

}  // namespace

std::string ThroughputResult::Line() const {
  return absl::StrFormat(
      "cluster throughput: hosts=%d nics=%d page=%s line_rate=%.1f%% p99_ms=%.2f", options.hosts,
      options.nics, PageName(options.page_bytes), 100 * line_rate, p99_batch_ms);
}

std::string ThroughputResult::Bound() const {
  if (master_utilization > 0.8) return "master service time (its workers are busy)";
  if (line_rate > 0.9) return "NIC line rate";
  if (nic_skew > 1.3) return "hot NICs (skewed placement or reads)";
  if (master_share > 0.2) return "master round trips (latency, not load)";
  return "per-client concurrency (two loops per rank)";
}

ThroughputResult RunClusterThroughput(const ThroughputOptions& options) {
  Bench bench(options);
  return bench.Run();
}

}  // namespace sim
