#include "sim/cluster/vopr.h"

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "sim/cluster/key_bytes.h"
#include "sim/cluster/store_cluster.h"

namespace sim {
namespace {

using mooncake::BufferRef;
using mooncake::ErrorCode;

constexpr int kMaxPages = 128;  // SGLang reads and writes at most 128 pages per batch

bool KnownError(int64_t code) {
  switch (static_cast<ErrorCode>(code)) {
    case ErrorCode::INTERNAL_ERROR:
    case ErrorCode::SEGMENT_NOT_FOUND:
    case ErrorCode::NO_AVAILABLE_HANDLE:
    case ErrorCode::INVALID_PARAMS:
    case ErrorCode::INVALID_REPLICA:
    case ErrorCode::REPLICA_IS_NOT_READY:
    case ErrorCode::OBJECT_NOT_FOUND:
    case ErrorCode::OBJECT_HAS_LEASE:
    case ErrorCode::LEASE_EXPIRED:
    case ErrorCode::TRANSFER_FAIL:
    case ErrorCode::RPC_FAIL:
    case ErrorCode::RPC_TIMEOUT:
      return true;
    default:
      return false;
  }
}

std::string Ms(SimTime t) { return absl::StrFormat("%.3fms", static_cast<double>(t) / 1e6); }

// The seed's cluster shape and workload.
struct Shape {
  int hosts = 3;
  int ranks = 2;
  int nics = 2;
  bool mla = false;  // MLA: one key per page shared by every rank (concurrent writers)
  int replicas = 1;
  uint64_t object_size = 8 << 10;
  double reuse = 0.6;            // probability a request continues a known prefix chain
  bool reuse_addresses = false;  // restarted clients map their memory where it was
  // Memory regions split into MR chunks of this many bytes (0: one chunk): objects then span
  // chunk boundaries on both sides of a transfer.
  uint64_t mr_chunk = 0;
  // QPs on a down NIC fail at send with LOC_QP_OP_ERR, as on rxe (else: packets lost, retries).
  bool rxe_port_down = false;
  std::string Describe() const {
    return absl::StrCat(hosts, " hosts x ", ranks, " ranks, ", nics, " NICs, ", mla ? "MLA" : "MHA",
                        ", ", replicas, " replica(s), ", object_size >> 10, " KiB objects",
                        reuse_addresses ? ", restarts reuse addresses" : "",
                        mr_chunk > 0 ? absl::StrCat(", MR chunks of ", mr_chunk, " bytes") : "",
                        rxe_port_down ? ", rxe port-down errors" : "");
  }
};

// The planted bug: eviction that ignores read leases (a reader may then get the bytes of another
// object that reused the space). Injected as the master's policy; the invariants must catch it.
class LeaseIgnoringPolicy final : public mooncake::LruEvictionPolicy {
 public:
  bool Evictable(const mooncake::EvictionCandidate& c, int64_t) const override {
    return c.complete && !c.hard_pinned;
  }
};

Shape PickShape(mooncake::Rng& rng) {
  Shape s;
  s.hosts = static_cast<int>(rng.UniformRange(2, 4));
  s.ranks = static_cast<int>(rng.UniformRange(1, 2));
  static const int kNics[] = {1, 2, 2, 4, 8};
  s.nics = kNics[rng.Uniform(5)];
  s.mla = rng.Bernoulli(0.3);
  s.replicas = rng.Bernoulli(0.2) ? 2 : 1;
  s.object_size = rng.Bernoulli(0.5) ? (4 << 10) : (2 << 10);
  s.reuse = 0.4 + 0.5 * rng.UniformDouble();
  s.reuse_addresses = rng.Bernoulli(0.5);
  // A third of the seeds register memory in chunks that are no multiple of the object size.
  if (rng.Bernoulli(0.33)) {
    const uint64_t segment = 1024 * s.object_size;
    s.mr_chunk = segment / rng.UniformRange(2, 5) + 1536;
  }
  s.rxe_port_down = rng.Bernoulli(0.5);
  return s;
}

class Vopr {
 public:
  explicit Vopr(const VoprOptions& options)
      : options_(options), shape_rng_(options.seed ^ 0x766f7072ULL) {}

  VoprResult Run();

 private:
  struct KeyState {
    SimTime acked = -1;        // end of the latest put answered 0 with no drop during it
    SimTime dropped = -1;      // latest drop (remove, evict, segment lost)
    SimTime lease_floor = -1;  // start of the latest read that found it with no drop during it
  };
  struct Op {
    int client = 0;
    SimTime start = 0;
    std::string what;
  };
  struct CrashedSegment {
    std::string name;
    uint64_t base = 0;
    mooncake::ClientId owner;
    SimTime crashed_at = 0;
  };

  void CountError(int64_t code) {
    ++result_.failed_keys;
    ++result_.errors[code];
  }
  // `inside_master`: called from the master's drop hook, under its locks; no master state then.
  void Fail(const std::string& what, bool inside_master = false) {
    if (!violation_.empty()) return;
    violation_ = absl::StrCat("t=", Ms(cluster_->sim().Now()), ": ", what,
                              inside_master ? "" : MasterState());
  }
  std::string MasterState() {
    mooncake::MasterService* m = cluster_->master().service();
    if (m == nullptr) return " [master down]";
    const mooncake::MasterMetrics x = m->GetMetrics();
    return absl::StrCat(" [master: ", x.segments, " segments, ", x.allocated_bytes, "/",
                        x.capacity_bytes, " bytes allocated, ", x.objects, " objects (",
                        x.processing_objects, " processing), ", x.discarded_bytes,
                        " bytes held by discarded puts, ", x.clients, " clients]");
  }
  KeyState& Key(const std::string& key) { return keys_[key]; }
  SimTime DroppedAt(const KeyState& k) const { return std::max(k.dropped, master_restart_at_); }
  // A read that started at `start` found the key: the master leased it no earlier than that,
  // unless the key was dropped meanwhile (then the lease was the dropped object's).
  void RecordLease(KeyState& k, SimTime start) {
    if (DroppedAt(k) < start) k.lease_floor = std::max(k.lease_floor, start);
  }
  // Invariant 2: `what` (a read that started at `start`) found nothing under `key`.
  void CheckNotLost(const std::string& key, const KeyState& k, SimTime start,
                    absl::string_view what) {
    if (k.acked >= 0 && k.acked <= start && DroppedAt(k) < k.acked) {
      Fail(absl::StrCat("invariant 2: ", what, "(", key,
                        ") found nothing at a request that "
                        "started at ",
                        Ms(start), ", but a put acknowledged it at ", Ms(k.acked),
                        " and nothing dropped it since"));
    }
  }

  // Operation bookkeeping (invariant 5).
  uint64_t Begin(int client, std::string what);
  bool End(uint64_t id, SimTime* start);

  void OnDropped(absl::string_view key, mooncake::ObjectDropReason reason);
  void AfterTick();
  void ScheduleFaults();
  void HealAll();
  void CrashHost(int host);
  // RestartHost brings a crashed host back and starts its clients' loops again.
  void RestartHost(int host);
  void StartLoops(int client);

  // The workload: each client runs a writer loop and a reader loop.
  std::vector<std::string> PageKeys(int client, uint64_t chain, int page) const;
  void NextRequest(int client, int loop);
  void Request(int client, int loop);
  void Probe(int client);

  const VoprOptions options_;
  mooncake::Rng shape_rng_;
  Shape shape_;
  std::unique_ptr<StoreCluster> cluster_;
  absl::flat_hash_map<std::string, KeyState> keys_;
  SimTime master_restart_at_ = -1;
  std::map<uint64_t, Op> ops_;  // outstanding, by id
  uint64_t next_op_ = 1;
  std::vector<CrashedSegment> crashed_;
  std::string violation_;
  bool stop_workload_ = false;
  uint64_t chains_ = 0;
  SimTime heal_at_ = 0;
  SimTime op_bound_ = 0;
  SimTime lease_ns_ = 0;
  SimTime segment_gone_bound_ = 0;
  int probes_left_ = 0;
  int fault_count_ = 0;
  VoprResult result_;
};

uint64_t Vopr::Begin(int client, std::string what) {
  const uint64_t id = next_op_++;
  ops_[id] = Op{client, cluster_->sim().Now(), std::move(what)};
  return id;
}

bool Vopr::End(uint64_t id, SimTime* start) {
  auto it = ops_.find(id);
  if (it == ops_.end()) {
    Fail(
        absl::StrCat("invariant 5: operation ", id, " completed twice (or after its client died)"));
    return false;
  }
  *start = it->second.start;
  const SimTime took = cluster_->sim().Now() - it->second.start;
  result_.max_op_time = std::max(result_.max_op_time, took);
  ops_.erase(it);
  ++result_.ops;
  return true;
}

void Vopr::OnDropped(absl::string_view key, mooncake::ObjectDropReason reason) {
  const SimTime now = cluster_->sim().Now();
  KeyState& k = Key(std::string(key));
  if (reason == mooncake::ObjectDropReason::kEvicted) {
    ++result_.evicted;
    // A lease from before a master restart died with that master.
    if (k.lease_floor >= 0 && k.lease_floor > master_restart_at_ &&
        k.lease_floor + lease_ns_ > now) {
      Fail(absl::StrCat("invariant 4: ", key, " evicted while leased: a read that started at ",
                        Ms(k.lease_floor), " found it, so its lease runs until at least ",
                        Ms(k.lease_floor + lease_ns_)),
           /*inside_master=*/true);
    }
  }
  k.dropped = now;
  k.lease_floor = -1;
}

void Vopr::AfterTick() {
  mooncake::MasterService* m = cluster_->master().service();
  if (m == nullptr) return;
  if (absl::Status s = m->CheckInvariants(); !s.ok()) {
    Fail(absl::StrCat("invariant 4: master accounting: ", s.message()));
  }
  if (!cluster_->master().replication_error().empty()) {
    Fail(absl::StrCat("replication: ", cluster_->master().replication_error()));
  }
  const SimTime now = cluster_->sim().Now();
  // Invariant 3: a crashed host's segments are gone within the bound.
  if (!crashed_.empty()) {
    std::set<std::tuple<std::string, uint64_t, uint64_t, uint64_t>> mounted;
    for (const auto& s : m->ListSegments()) {
      mounted.emplace(s.segment.name, s.segment.base, s.owner.high, s.owner.low);
    }
    for (const CrashedSegment& c : crashed_) {
      // A new leader gives every owner a full client_ttl from its takeover.
      const SimTime from = std::max(c.crashed_at, cluster_->master().last_takeover());
      if (now - from > segment_gone_bound_ &&
          mounted.count({c.name, c.base, c.owner.high, c.owner.low})) {
        Fail(absl::StrCat("invariant 3: segment ", c.name, " of a host that crashed at ",
                          Ms(c.crashed_at), " is still mounted (bound ", Ms(segment_gone_bound_),
                          ")"));
      }
    }
  }
  // Invariant 5: nothing outstanding past the bound.
  for (const auto& [id, op] : ops_) {
    if (now - op.start > op_bound_) {
      Fail(absl::StrCat("invariant 5: ", op.what, " on client ", op.client, " started at ",
                        Ms(op.start), " has not completed within ", Ms(op_bound_)));
      break;
    }
  }
}

std::vector<std::string> Vopr::PageKeys(int client, uint64_t chain, int page) const {
  const std::string base = absl::StrCat("c", chain, "p", page);
  if (shape_.mla) return {base};
  const int rank = cluster_->client(client).rank;
  return {absl::StrCat(base, "_", rank, "_k"), absl::StrCat(base, "_", rank, "_v")};
}

void Vopr::NextRequest(int client, int loop) {
  StoreCluster::Client& c = cluster_->client(client);
  if (!c.up() || stop_workload_) return;
  std::weak_ptr<bool> alive = c.alive;
  const SimTime think = static_cast<SimTime>(
      cluster_->sim().rng().Uniform(static_cast<uint64_t>(options_.max_think) + 1));
  cluster_->sim().Schedule(think, "workload", [this, client, loop, alive] {
    if (!alive.expired() && violation_.empty()) Request(client, loop);
  });
}

// One HiCache-shaped request on one loop: loop 0 prefetches (exists, then reads the prefix),
// loop 1 backs up (exists, then writes the missing suffix); both occasionally remove.
void Vopr::Request(int client, int loop) {
  Simulator& sim = cluster_->sim();
  mooncake::Rng& rng = sim.rng();
  StoreCluster::Client& c = cluster_->client(client);
  uint64_t chain;
  if (chains_ > 0 && rng.Bernoulli(shape_.reuse)) {
    // Recent chains are hot: shared prefixes across hosts and ranks.
    const uint64_t window = std::min<uint64_t>(chains_, 8);
    chain = chains_ - 1 - rng.Uniform(window);
  } else {
    chain = chains_++;
  }
  // Mostly short chains, sometimes a full 128-page batch.
  const int pages = static_cast<int>(rng.Bernoulli(0.05) ? kMaxPages : rng.UniformRange(2, 16));
  const int keys_per_page = shape_.mla ? 1 : 2;
  // Each loop owns half the client's buffer: 128 pages of its keys fit.
  char* buffer = c.buffer + loop * (cluster_->options().buffer_size / 2);
  const uint64_t size = shape_.object_size;
  std::vector<std::string> keys;
  for (int p = 0; p < pages; ++p) {
    for (std::string& k : PageKeys(client, chain, p)) keys.push_back(std::move(k));
  }
  const bool remove = rng.Bernoulli(0.03);
  if (remove) {
    std::vector<std::string> victims(keys.begin(), keys.begin() + std::min<size_t>(keys.size(), 8));
    const uint64_t id = Begin(client, "remove");
    c.core->BatchRemove(victims, false, [this, id, client, loop](std::vector<int> rc) {
      SimTime start;
      if (!End(id, &start)) return;
      for (int r : rc) {
        if (r != 0 && !KnownError(r)) Fail(absl::StrCat("invariant 5: remove answered ", r));
      }
      NextRequest(client, loop);
    });
    return;
  }
  const uint64_t id = Begin(client, "exists");
  auto keys_ptr = std::make_shared<std::vector<std::string>>(std::move(keys));
  c.core->BatchIsExist(*keys_ptr, [this, id, client, loop, keys_ptr, buffer, size, pages,
                                   keys_per_page](std::vector<int> rc) {
    SimTime start;
    if (!End(id, &start)) return;
    sim::Simulator& sim = cluster_->sim();
    int prefix = 0;
    bool in_prefix = true;
    for (size_t i = 0; i < rc.size(); ++i) {
      const std::string& key = (*keys_ptr)[i];
      KeyState& k = Key(key);
      sim.Trace(static_cast<uint64_t>(rc[i]));
      if (rc[i] == 1) {
        RecordLease(k, start);
      } else if (rc[i] == 0) {
        CheckNotLost(key, k, start, "exists");
      } else {
        CountError(rc[i]);
        if (!KnownError(rc[i])) Fail(absl::StrCat("invariant 5: exists answered ", rc[i]));
      }
      if (rc[i] != 1) in_prefix = false;
      if (in_prefix && (i + 1) % keys_per_page == 0)
        prefix = static_cast<int>((i + 1) / keys_per_page);
    }
    StoreCluster::Client& c = cluster_->client(client);
    if (loop == 0) {
      if (prefix == 0) return NextRequest(client, loop);
      // Read the prefix into the buffer, then check every byte.
      auto get_keys = std::make_shared<std::vector<std::string>>(
          keys_ptr->begin(), keys_ptr->begin() + prefix * keys_per_page);
      std::vector<std::vector<BufferRef>> bufs;
      for (size_t i = 0; i < get_keys->size(); ++i) {
        std::memset(buffer + i * size, 0, size);
        bufs.push_back({{buffer + i * size, size}});
      }
      const uint64_t gid = Begin(client, "get");
      // The get reads from the replica lists the exist call brought back when they are still
      // fresh (ReplicaCache): its lease may be the exist's, so it counts from the exist's start.
      const SimTime leased_from = start;
      c.core->BatchGet(
          *get_keys, std::move(bufs),
          [this, gid, client, loop, get_keys, buffer, size, leased_from](std::vector<int64_t> got) {
            SimTime start;
            if (!End(gid, &start)) return;
            for (size_t i = 0; i < got.size(); ++i) {
              const std::string& key = (*get_keys)[i];
              KeyState& k = Key(key);
              cluster_->sim().Trace(static_cast<uint64_t>(got[i]));
              if (got[i] > 0) {
                if (static_cast<uint64_t>(got[i]) != size) {
                  Fail(absl::StrCat("invariant 1: get(", key, ") returned ", got[i], " bytes, put ",
                                    size));
                  return;
                }
                const int64_t bad = VerifyKeyBytes(key, buffer + i * size, size);
                if (bad >= 0) {
                  Fail(absl::StrCat("invariant 1: get(", key, ") returned wrong bytes at offset ",
                                    bad, " (request started at ", Ms(start), ")"));
                  return;
                }
                ++result_.keys_read;
                RecordLease(k, leased_from);
              } else if (got[i] == static_cast<int64_t>(ErrorCode::OBJECT_NOT_FOUND)) {
                CheckNotLost(key, k, start, "get");
              } else {
                CountError(got[i]);
                if (!KnownError(got[i])) Fail(absl::StrCat("invariant 5: get answered ", got[i]));
              }
            }
            NextRequest(client, loop);
          });
      return;
    }
    // Back up the pages after the prefix.
    const int first = prefix;
    const int count = std::min(pages - first, kMaxPages);
    if (count <= 0) return NextRequest(client, loop);
    auto put_keys = std::make_shared<std::vector<std::string>>(
        keys_ptr->begin() + first * keys_per_page,
        keys_ptr->begin() + (first + count) * keys_per_page);
    std::vector<std::vector<BufferRef>> bufs;
    for (size_t i = 0; i < put_keys->size(); ++i) {
      FillKeyBytes((*put_keys)[i], buffer + i * size, size);
      bufs.push_back({{buffer + i * size, size}});
    }
    mooncake::ReplicateConfig config;
    config.replica_num = shape_.replicas;
    const uint64_t pid = Begin(client, "put");
    c.core->BatchPut(*put_keys, std::move(bufs), config,
                     [this, pid, client, loop, put_keys](std::vector<int> rc) {
                       SimTime start;
                       if (!End(pid, &start)) return;
                       const SimTime now = cluster_->sim().Now();
                       for (size_t i = 0; i < rc.size(); ++i) {
                         KeyState& k = Key((*put_keys)[i]);
                         cluster_->sim().Trace(static_cast<uint64_t>(rc[i]));
                         if (rc[i] == 0) {
                           ++result_.keys_written;
                           if (DroppedAt(k) < start) k.acked = now;
                         } else {
                           CountError(rc[i]);
                           if (!KnownError(rc[i])) {
                             Fail(absl::StrCat("invariant 5: put answered ", rc[i]));
                           }
                         }
                       }
                       NextRequest(client, loop);
                     });
  });
}

// Invariant 6: after every fault healed, each client stores and reads back fresh keys.
void Vopr::Probe(int client) {
  StoreCluster::Client& c = cluster_->client(client);
  const uint64_t size = shape_.object_size;
  auto keys = std::make_shared<std::vector<std::string>>();
  for (int i = 0; i < 2; ++i) keys->push_back(absl::StrCat("probe.", c.name, ".", i));
  char* buffer = c.buffer;
  std::vector<std::vector<BufferRef>> bufs;
  for (size_t i = 0; i < keys->size(); ++i) {
    FillKeyBytes((*keys)[i], buffer + i * size, size);
    bufs.push_back({{buffer + i * size, size}});
  }
  const uint64_t pid = Begin(client, "probe put");
  c.core->BatchPut(
      *keys, std::move(bufs), {}, [this, pid, client, keys, buffer, size](std::vector<int> rc) {
        SimTime start;
        if (!End(pid, &start)) return;
        for (size_t i = 0; i < rc.size(); ++i) {
          if (rc[i] != 0) {
            Fail(absl::StrCat("invariant 6: after faults healed at ", Ms(heal_at_), ", put(",
                              (*keys)[i], ") failed with ", rc[i]));
            return;
          }
        }
        std::memset(buffer, 0, keys->size() * size);
        std::vector<std::vector<BufferRef>> bufs;
        for (size_t i = 0; i < keys->size(); ++i) bufs.push_back({{buffer + i * size, size}});
        const uint64_t gid = Begin(client, "probe get");
        cluster_->client(client).core->BatchGet(
            *keys, std::move(bufs), [this, gid, keys, buffer, size](std::vector<int64_t> got) {
              SimTime start;
              if (!End(gid, &start)) return;
              for (size_t i = 0; i < got.size(); ++i) {
                if (got[i] != static_cast<int64_t>(size) ||
                    VerifyKeyBytes((*keys)[i], buffer + i * size, size) >= 0) {
                  Fail(absl::StrCat("invariant 6: after faults healed at ", Ms(heal_at_), ", get(",
                                    (*keys)[i], ") answered ", got[i]));
                  return;
                }
              }
              --probes_left_;
            });
      });
}

void Vopr::StartLoops(int client) {
  NextRequest(client, 0);
  NextRequest(client, 1);
}

void Vopr::RestartHost(int host) {
  if (cluster_->host_up(host)) return;
  if (absl::Status s = cluster_->RestartHost(host); !s.ok()) Fail(std::string(s.message()));
  for (int i = 0; i < cluster_->num_clients(); ++i) {
    if (cluster_->client(i).host == host) StartLoops(i);
  }
}

void Vopr::CrashHost(int host) {
  if (!cluster_->host_up(host)) return;
  for (int i = 0; i < cluster_->num_clients(); ++i) {
    StoreCluster::Client& c = cluster_->client(i);
    if (c.host != host || !c.up()) continue;
    crashed_.push_back(
        {c.name, reinterpret_cast<uint64_t>(c.segment), c.id, cluster_->sim().Now()});
    // Its operations die with it: they will never complete, and must not.
    for (auto it = ops_.begin(); it != ops_.end();) {
      it = it->second.client == i ? ops_.erase(it) : std::next(it);
    }
  }
  cluster_->CrashHost(host);
}

void Vopr::HealAll() {
  Network& net = cluster_->world().network();
  for (int h = 0; h < cluster_->num_hosts(); ++h) {
    for (NicId nic : net.host_nics(cluster_->host_id(h))) {
      net.SetNicUp(nic, true);
      net.SetLinkLoss(nic, 0);
      net.SetLinkLatency(nic, cluster_->options().nic.link_latency);
    }
    RestartHost(h);
  }
  cluster_->master().HealLinks();
}

void Vopr::ScheduleFaults() {
  Simulator& sim = cluster_->sim();
  mooncake::Rng& rng = shape_rng_;
  Network& net = cluster_->world().network();
  const int count = static_cast<int>(rng.UniformRange(1, 8));
  fault_count_ = count;
  const SimTime max_len = 500 * kMillisecond;
  heal_at_ = options_.fault_window + max_len;
  for (int f = 0; f < count; ++f) {
    const SimTime at =
        100 * kMillisecond +
        static_cast<SimTime>(rng.Uniform(options_.fault_window - 100 * kMillisecond));
    const SimTime len = 5 * kMillisecond + static_cast<SimTime>(rng.Uniform(max_len));
    const int host = static_cast<int>(rng.Uniform(cluster_->num_hosts()));
    const std::vector<NicId>& nics = net.host_nics(cluster_->host_id(host));
    const NicId nic = nics[rng.Uniform(nics.size())];
    const int kind = static_cast<int>(rng.Uniform(8));
    std::string what;
    switch (kind) {
      case 0:
        what = absl::StrCat("crash host", host, " for ", Ms(len));
        sim.ScheduleAt(at, "fault.crash", [this, host] { CrashHost(host); });
        sim.ScheduleAt(at + len, "fault.restart", [this, host] { RestartHost(host); });
        break;
      case 1:
        what = absl::StrCat("NIC ", nic, " down for ", Ms(len));
        net.ScheduleNicDown(nic, at);
        net.ScheduleNicUp(nic, at + len);
        break;
      case 2: {
        const double p = 0.001 + 0.02 * rng.UniformDouble();
        what = absl::StrFormat("NIC %d loses %.3f of packets for %s", nic, p, Ms(len));
        net.ScheduleLinkLoss(nic, p, at);
        net.ScheduleLinkLoss(nic, 0, at + len);
        break;
      }
      case 3: {
        const SimTime lat = cluster_->options().nic.link_latency * rng.UniformRange(5, 200);
        what = absl::StrCat("NIC ", nic, " latency ", Ms(lat), " for ", Ms(len));
        net.ScheduleLatency(nic, lat, at);
        net.ScheduleLatency(nic, cluster_->options().nic.link_latency, at + len);
        break;
      }
      case 4:
      case 5: {
        // Partitions sometimes outlast client_ttl, so the master declares the client dead.
        const SimTime plen = kind == 5 ? len * 2 : len;
        const HostId hid = cluster_->host_id(host);
        what = absl::StrCat("partition host", host, " from the master for ", Ms(plen));
        sim.ScheduleAt(at, "fault.partition",
                       [this, hid] { cluster_->master().SetPartitioned(hid, true); });
        sim.ScheduleAt(at + plen, "fault.partition_end",
                       [this, hid] { cluster_->master().SetPartitioned(hid, false); });
        heal_at_ = std::max(heal_at_, at + plen);
        break;
      }
      case 6: {
        const double p = 0.05 + 0.3 * rng.UniformDouble();
        const SimTime extra = static_cast<SimTime>(rng.Uniform(20 * kMillisecond));
        what =
            absl::StrFormat("master link loses %.2f, +%s latency, for %s", p, Ms(extra), Ms(len));
        sim.ScheduleAt(at, "fault.master_link", [this, p, extra] {
          cluster_->master().SetLoss(p);
          cluster_->master().SetExtraLatency(extra);
        });
        sim.ScheduleAt(at + len, "fault.master_link_end", [this] {
          cluster_->master().SetLoss(0);
          cluster_->master().SetExtraLatency(0);
        });
        break;
      }
      default: {
        if (options_.ha) {
          what = "fail the master over (kill the leader; the standby takes over)";
          sim.ScheduleAt(at, "fault.failover", [this] { cluster_->master().Failover(); });
          break;
        }
        const SimTime down = 5 * kMillisecond + len / 8;
        what = absl::StrCat("restart the master (down ", Ms(down), ")");
        sim.ScheduleAt(at, "fault.master_restart",
                       [this, down] { cluster_->master().Restart(down); });
        break;
      }
    }
    if (options_.verbose)
      MC_LOG(INFO) << "seed " << options_.seed << " fault at " << Ms(at) << ": " << what;
  }
}

VoprResult Vopr::Run() {
  const auto wall0 = std::chrono::steady_clock::now();
  result_.seed = options_.seed;
  shape_ = PickShape(shape_rng_);
  if (options_.object_size > 0) shape_.object_size = options_.object_size;
  if (options_.mr_chunk > 0) shape_.mr_chunk = options_.mr_chunk;
  StoreClusterOptions o;
  o.seed = options_.seed;
  o.hosts = shape_.hosts;
  o.ranks = shape_.ranks;
  o.nics = shape_.nics;
  // Each loop's half buffer holds 128 pages of its keys; the pool is smaller than the data the
  // workload writes, so eviction runs.
  o.buffer_size = 2 * kMaxPages * 2 * shape_.object_size;
  o.segment_size = 1024 * shape_.object_size;
  o.heartbeat_period = 50 * kMillisecond;
  o.rdma.qp_timeout = 10;  // 4 ms per try: failures surface in tens of ms
  o.rdma.rail_pause = absl::Milliseconds(50);
  o.engine.max_mr_chunk = shape_.mr_chunk;
  if (shape_.rxe_port_down) o.local_port_down = SimVerbsOptions::LocalPortDown::kFailAtSend;
  o.master.default_kv_lease_ttl = absl::Milliseconds(30);
  o.master.client_ttl = absl::Milliseconds(500);
  o.master.put_start_discard_timeout = absl::Milliseconds(500);
  o.master.put_start_release_timeout = absl::Milliseconds(1000);
  o.master.eviction_ratio = 0.1;
  o.reuse_addresses = shape_.reuse_addresses || options_.reuse_addresses;
  o.link.ha = options_.ha;
  o.link.plant_ack_before_replicating = options_.plant_ack_before_replicating;
  if (options_.plant_evict_leased)
    o.master.eviction_policy = std::make_shared<LeaseIgnoringPolicy>();
  o.master.on_object_dropped = [this](absl::string_view key, mooncake::ObjectDropReason why) {
    OnDropped(key, why);
  };
  lease_ns_ = absl::ToInt64Nanoseconds(o.master.default_kv_lease_ttl);
  segment_gone_bound_ = absl::ToInt64Nanoseconds(o.master.client_ttl) + 2 * o.link.tick_period;
  // Worst case of one operation: a put that waits for another writer (put_wait_timeout) and
  // then runs put-start, the transfer (every RDMA try failing) and put-end, each RPC timing out.
  op_bound_ = 2 * kSecond;
  result_.shape = shape_.Describe();
  cluster_ = std::make_unique<StoreCluster>(o);
  Simulator& sim = cluster_->sim();
  cluster_->master().set_after_tick([this] { AfterTick(); });
  cluster_->master().set_on_restart([this] { master_restart_at_ = cluster_->sim().Now(); });
  if (absl::Status s = cluster_->Start(); !s.ok()) {
    result_.ok = false;
    result_.violation = absl::StrCat("cluster failed to start: ", s.message());
    return result_;
  }
  if (options_.faults) {
    ScheduleFaults();
  } else {
    heal_at_ = options_.fault_window;
  }
  // Let mounts land, then start every client's two loops.
  sim.RunFor(5 * kMillisecond);
  for (int i = 0; i < cluster_->num_clients(); ++i) StartLoops(i);
  // Workload under faults, then everything heals; the workload keeps running while clients
  // remount, then stops; then every client must be able to store and read again.
  const SimTime settle = segment_gone_bound_ + 300 * kMillisecond;
  sim.RunUntil([&] { return !violation_.empty(); }, heal_at_);
  if (violation_.empty()) {
    HealAll();
    sim.RunUntil([&] { return !violation_.empty(); }, heal_at_ + settle);
  }
  stop_workload_ = true;
  if (violation_.empty()) {
    sim.RunUntil([&] { return !violation_.empty() || ops_.empty(); }, sim.Now() + op_bound_);
    if (!ops_.empty() && violation_.empty()) AfterTick();
    // Leases the workload took run out before the probes need room.
    sim.RunUntil([&] { return !violation_.empty(); }, sim.Now() + lease_ns_ + o.link.tick_period);
  }
  if (violation_.empty()) {
    probes_left_ = cluster_->num_clients();
    for (int i = 0; i < cluster_->num_clients(); ++i) Probe(i);
    const SimTime probe_start = sim.Now();
    sim.RunUntil([&] { return !violation_.empty() || probes_left_ == 0; }, probe_start + op_bound_);
    if (violation_.empty() && probes_left_ > 0) {
      Fail(absl::StrCat("invariant 6: ", probes_left_, " probe(s) did not finish within ",
                        Ms(op_bound_), " after faults healed"));
    }
  }
  if (violation_.empty()) AfterTick();
  if (options_.verbose && cluster_->master().service() != nullptr) {
    const mooncake::MasterMetrics x = cluster_->master().service()->GetMetrics();
    MC_LOG(ERROR) << "master: put_start keys " << x.put_start_keys << " ok " << x.put_start_ok
                  << " no_space " << x.put_start_no_space << " exists "
                  << x.put_start_already_exists << " eviction runs " << x.eviction_runs
                  << " evicted " << x.evicted_objects << MasterState();
  }

  result_.ok = violation_.empty();
  result_.violation = violation_;
  result_.faults = options_.faults ? fault_count_ : 0;
  result_.failovers = cluster_->master().failovers();
  result_.trace_hash = sim.trace_hash();
  result_.events = sim.events_executed();
  result_.sim_time = sim.Now();
  result_.bytes_moved = cluster_->bytes_moved();
  const double line_rate_bytes =
      cluster_->options().nic.rate_bps / 8.0 * cluster_->options().nics * cluster_->num_hosts();
  result_.line_rate_fraction = static_cast<double>(result_.bytes_moved) /
                               (static_cast<double>(result_.sim_time) / 1e9 * line_rate_bytes);
  result_.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  cluster_.reset();
  return result_;
}

}  // namespace

VoprResult RunVopr(const VoprOptions& options) {
  Vopr vopr(options);
  return vopr.Run();
}

std::string ReplayCommand(const VoprOptions& options) {
  return absl::StrCat(
      "bazel run //sim:vopr -- --seed=", options.seed,
      options.plant_evict_leased ? " --plant_evict_leased" : "", options.ha ? " --ha" : "",
      options.plant_ack_before_replicating ? " --plant_ack_before_replicating" : "",
      options.reuse_addresses ? " --reuse_addresses" : "", options.faults ? "" : " --nofaults",
      options.max_think != kMillisecond
          ? absl::StrCat(" --max_think_us=", options.max_think / kMicrosecond)
          : "",
      options.object_size != 0 ? absl::StrCat(" --object_kib=", options.object_size >> 10) : "",
      options.mr_chunk != 0 ? absl::StrCat(" --mr_chunk=", options.mr_chunk) : "");
}

}  // namespace sim
