// Cluster throughput: the whole store (production master, store cores, engines, RDMA transport)
// in a StoreCluster under SGLang HiCache's L3 call pattern, measured against the NICs' line rate
// (docs/benchmarks.md, "Cluster throughput in the simulator").
//
// Every TP rank of every host is one store client running SGLang's two loops:
//   prefetch  batch_is_exist(the 128 pages of a hot prefix), then batch_get_into(the prefix found)
//   backup    batch_is_exist(the 128 pages of a new chain), then batch_put_from(the missing pages)
// MHA ranks write `<chain>_<page>_<rank>_k` and `_v`; MLA ranks share one key per page, so every
// rank of a host writes the same keys and the dedup does its work. The hot prefixes are the first
// chains every client backs up; every host's prefetches read them (so the reads of one host land
// on the NICs of others), and later chains fill the pool until LRU eviction takes them.
//
// The NICs move no payload (StoreClusterOptions::copy_data = false): the timing is the network
// model's, the control flow (master calls, transfers, completions) is the production code's.
//
//   sim::ThroughputOptions o;  o.hosts = 16;  o.page_bytes = 4 << 20;
//   sim::ThroughputResult r = sim::RunClusterThroughput(o);
//   printf("%s\n", r.Line().c_str());
#ifndef SIM_CLUSTER_CLUSTER_THROUGHPUT_H_
#define SIM_CLUSTER_CLUSTER_THROUGHPUT_H_

#include <cstdint>
#include <map>
#include <string>

#include "sim/kernel/simulator.h"

namespace sim {

struct ThroughputOptions {
  uint64_t seed = 1;
  int hosts = 4;
  int ranks = 4;  // TP ranks (store clients) per host
  int nics = 4;   // per host
  double nic_gbps = 200;
  uint64_t page_bytes = 4 << 20;  // one key's object
  int pages_per_batch = 128;      // SGLang's largest batch
  bool mla = false;
  // Pages each client's segment holds (the pool is hosts * ranks * this many pages): the master
  // evicts once it is full. The hot prefixes take a quarter of it.
  int segment_pages = 2048;
  // Hot prefixes: the first chains each client backs up (per rank for MHA, per host for MLA).
  int hot_chains_per_client = 2;
  // The master: one-way RPC latency (plus uniform jitter) and the modelled service time
  // (SimMasterOptions). Calibrated on master_bench's fast-RPC numbers at batch 256 (about 130 ns
  // per key for exist, 350 for a replica list, 570 for put-start plus put-end) and a loopback
  // round trip of about 16 us at batch 1.
  SimTime master_latency = 50 * kMicrosecond;
  SimTime master_jitter = 10 * kMicrosecond;
  int master_threads = 8;
  SimTime master_per_call = 10 * kMicrosecond;
  SimTime master_per_key = 300;  // ns
  // The read lease exist and replica-list calls grant. Every exist that finds a page leases it,
  // the backup's dedup check included, and leased pages cannot be evicted: with MLA's shared keys
  // the lease must be shorter than the time the pool takes to turn over.
  SimTime lease = 500 * kMillisecond;
  // Measurement: the loops run for warmup + measure; the counters cover the measure window.
  SimTime warmup = 20 * kMillisecond;
  SimTime measure = 50 * kMillisecond;
  // Exist calls bring back replica lists for the get after them (StoreCoreOptions); false
  // measures the store without that saving.
  bool replica_cache = true;
  // Verify every read byte (the NICs then copy payload: small configurations only).
  bool verify = false;
};

struct ThroughputResult {
  ThroughputOptions options;
  double line_rate = 0;  // share of the aggregate NIC line rate used in the window (egress)
  double gbytes_per_s = 0;
  uint64_t batches = 0;      // loop iterations completed in the window
  uint64_t get_batches = 0;  // ... that read
  uint64_t put_batches = 0;  // ... that wrote
  double p50_batch_ms = 0;   // per loop iteration: exist + the data call
  double p99_batch_ms = 0;
  // Master calls of one prefetch (exist included) and one backup, each run alone at the end.
  double master_calls_per_get_batch = 0;
  double master_calls_per_put_batch = 0;
  double master_wall_us_per_call = 0;  // measured inside the real MasterService
  double master_wall_ns_per_key = 0;
  double master_modelled_us_per_call = 0;
  double master_utilization = 0;       // modelled busy time / (threads * window)
  double master_share = 0;             // of a loop's time, waiting for master answers
  double nic_skew = 0;                 // busiest NIC's traffic / the mean NIC's
  uint64_t key_errors = 0;             // per-key failures (and, with verify, wrong bytes)
  std::map<int64_t, uint64_t> errors;  // per-key failures by result (1: wrong bytes)
  uint64_t evicted = 0;
  double wall_seconds = 0;
  // "cluster throughput: hosts=H nics=N page=P line_rate=X.X% p99_ms=Y"
  std::string Line() const;
  // The bound this point ran into, in words.
  std::string Bound() const;
};

ThroughputResult RunClusterThroughput(const ThroughputOptions& options);

}  // namespace sim

#endif  // SIM_CLUSTER_CLUSTER_THROUGHPUT_H_
