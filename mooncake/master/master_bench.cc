// master_bench: key operations per second through gRPC on loopback (batches of 1 and 256 keys) and
// the master's memory per object. Baselines measured in the same run: an empty-ish RPC (Heartbeat)
// for the transport, and the same operations called on MasterService directly (no RPC).
//
//   bazel run -c opt //mooncake/master:master_bench -- --seconds=1.5 --objects=1000000
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/logging.h"
#include "mooncake/common/mutex_mode.h"
#include "mooncake/master/grpc_master_client.h"
#include "mooncake/master/ha/proto_journal.h"
#include "mooncake/master/ha/standby_state.h"
#include "mooncake/master/master_server.h"
#include "mooncake/master/master_service.h"

ABSL_FLAG(double, seconds, 1.5, "Duration of each throughput measurement.");
ABSL_FLAG(int, threads, 2, "Client threads issuing RPCs concurrently.");
ABSL_FLAG(int, objects, 1000000, "Objects inserted for the memory measurement (0 skips it).");

namespace mooncake {
namespace {

constexpr uint64_t kObjectSize = 64 << 10;
constexpr uint64_t kSegmentSize = uint64_t{1} << 40;  // address space only; nothing is touched

// SGLang-shaped keys: 64 hex digits of a page hash, then "_<tp rank>_k".
std::string Key(uint64_t thread, uint64_t i) {
  return absl::StrFormat("%016x%016x%016x%016x_0_k", thread, i, i * 0x9e3779b97f4a7c15ull, ~i);
}

int64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

struct Result {
  double key_ops_per_sec;
  double rpcs_per_sec;
};

// Runs `step` (one batch; returns keys done) on `threads` threads for `seconds`.
template <typename Step>
Result Measure(int threads, double seconds, Step step) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> keys{0}, rpcs{0};
  std::vector<std::thread> workers;
  const absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      uint64_t round = 0, my_keys = 0, my_rpcs = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        my_keys += step(t, round++);
        ++my_rpcs;
      }
      keys += my_keys;
      rpcs += my_rpcs;
    });
  }
  absl::SleepFor(absl::Seconds(seconds));
  stop = true;
  for (std::thread& w : workers) w.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  return {static_cast<double>(keys) / elapsed, static_cast<double>(rpcs) / elapsed};
}

void Print(const std::string& name, int batch, const Result& r, double baseline_rpcs) {
  std::printf("%-34s %6d %14.0f %12.0f %10.2f\n", name.c_str(), batch, r.key_ops_per_sec,
              r.rpcs_per_sec, r.rpcs_per_sec / baseline_rpcs);
}

void MountSegments(MasterService* service) {
  for (int i = 0; i < 4; ++i) {
    ClientId owner{static_cast<uint64_t>(i + 1), 1};
    (void)service->MountSegment(
        owner, {absl::StrCat("127.0.0.1:", 17000 + i), 0x10000000000ull, kSegmentSize});
  }
}

void Throughput(int threads, double seconds) {
  MasterServerOptions options;
  options.bind_address = "127.0.0.1";
  options.port = 0;
  options.metrics_port = -1;
  options.service.client_ttl = absl::Hours(1);
  auto server = MasterServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start the master: %s\n", server.status().ToString().c_str());
    std::exit(1);
  }
  MasterService* service = (*server)->service();
  MountSegments(service);
  std::printf("master_bench: %d client threads, %.1f s per row, loopback, %d cores\n", threads,
              seconds, static_cast<int>(std::thread::hardware_concurrency()));
  std::printf("%-34s %6s %14s %12s %10s\n", "operation", "batch", "key-ops/s", "RPCs/s",
              "RPCs/base");
  std::vector<std::vector<std::string>> read_keys(threads);
  constexpr uint64_t kReadKeys = 256 * 64;
  Result base{};
  // Per-key calls over gRPC alone, then over the fast RPC path (advertised by the heartbeat).
  for (bool fast : {false, true}) {
    const std::string via = fast ? " [fast rpc]" : " [grpc]";
    GrpcMasterClientOptions client_options;
    client_options.address = absl::StrCat("127.0.0.1:", (*server)->port());
    client_options.use_fast_rpc = fast;
    std::vector<std::unique_ptr<GrpcMasterClient>> clients;
    for (int t = 0; t < threads; ++t)
      clients.push_back(std::move(*GrpcMasterClient::Create(client_options)));
    const ClientId hb_id{1, 1};
    const Result heartbeat = Measure(threads, seconds, [&](int t, uint64_t) {
      (void)clients[t]->Heartbeat(hb_id);
      return 1;
    });
    if (!fast) {
      base = heartbeat;
      Print("Heartbeat RPC (baseline)", 0, base, base.rpcs_per_sec);
    }

    // Preload keys to read: 256 * 64 per thread.
    for (int t = 0; t < threads && !fast; ++t) {
      for (uint64_t i = 0; i < kReadKeys; ++i) read_keys[t].push_back(Key(100 + t, i));
      std::vector<uint64_t> sizes(kReadKeys, kObjectSize);
      for (uint64_t i = 0; i < kReadKeys; i += 256) {
        absl::Span<const std::string> batch(&read_keys[t][i], 256);
        (void)clients[t]->BatchPutStart(batch, absl::MakeConstSpan(sizes).subspan(0, 256), {}, {});
        (void)clients[t]->BatchPutEnd(batch, {});
      }
    }

    for (int batch : {1, 256}) {
      const Result exist = Measure(threads, seconds, [&](int t, uint64_t round) {
        const uint64_t at = (round * batch) % kReadKeys;
        auto r = clients[t]->BatchExistKey(absl::MakeConstSpan(&read_keys[t][at], batch));
        return r.ok() ? batch : 0;
      });
      Print("BatchExistKey" + via, batch, exist, base.rpcs_per_sec);
      const Result list = Measure(threads, seconds, [&](int t, uint64_t round) {
        const uint64_t at = (round * batch) % kReadKeys;
        auto r = clients[t]->BatchGetReplicaList(absl::MakeConstSpan(&read_keys[t][at], batch));
        return r.ok() ? batch : 0;
      });
      Print("BatchGetReplicaList" + via, batch, list, base.rpcs_per_sec);

      // Put start + put end on fresh keys; each key counts once per RPC (two key-ops per put).
      std::atomic<uint64_t> generation{static_cast<uint64_t>(batch) << 32};
      const std::vector<uint64_t> sizes(batch, kObjectSize);
      const Result put = Measure(threads, seconds, [&](int t, uint64_t) {
        const uint64_t first = generation.fetch_add(batch);
        std::vector<std::string> keys;
        keys.reserve(batch);
        for (int i = 0; i < batch; ++i) keys.push_back("p" + Key(t, first + i));
        auto started = clients[t]->BatchPutStart(keys, sizes, {}, {});
        auto ended = clients[t]->BatchPutEnd(keys, {});
        return started.ok() && ended.ok() ? 2 * batch : 0;
      });
      // Two RPCs per step.
      Print("BatchPutStart+BatchPutEnd" + via, batch, {put.key_ops_per_sec, 2 * put.rpcs_per_sec},
            base.rpcs_per_sec);
      // Keep the pool from filling: drop what the put rows created.
      (void)service->RemoveByRegex("^p", true);
    }
  }

  // The same operations without RPC, for the cost of the transport.
  std::vector<std::vector<absl::string_view>> views(threads);
  for (int t = 0; t < threads; ++t) {
    views[t].assign(read_keys[t].begin(), read_keys[t].end());
  }
  const Result direct_exist = Measure(threads, seconds, [&](int t, uint64_t round) {
    const uint64_t at = (round * 256) % kReadKeys;
    (void)service->BatchExistKey(absl::MakeConstSpan(&views[t][at], 256));
    return 256;
  });
  Print("in-process BatchExistKey", 256, direct_exist, base.rpcs_per_sec);
  (*server)->Stop();
}

void Memory(int objects) {
  ManualClock clock;
  MasterServiceOptions options;
  options.client_ttl = absl::Hours(1);
  const int64_t rss_before = RssBytes();
  {
    MasterService service(options, &clock);
    MountSegments(&service);
    const int64_t rss_empty = RssBytes();
    std::vector<std::string> keys;
    std::vector<absl::string_view> views;
    const std::vector<uint64_t> sizes(256, kObjectSize);
    size_t key_bytes = 0;
    for (int done = 0; done < objects; done += 256) {
      keys.clear();
      for (int i = 0; i < 256; ++i) keys.push_back(Key(7, done + i));
      views.assign(keys.begin(), keys.end());
      auto started = service.BatchPutStart(views, sizes, {});
      (void)service.BatchPutEnd(views, {});
      for (const std::string& k : keys) key_bytes += k.size();
      if (!started.ok() || (*started)[0].error != ErrorCode::OK) {
        std::fprintf(stderr, "put failed at %d\n", done);
        return;
      }
    }
    const uint64_t n = service.GetMetrics().objects;
    const int64_t rss_full = RssBytes();
    const double per_object = static_cast<double>(rss_full - rss_empty) / static_cast<double>(n);
    const double key_len = static_cast<double>(key_bytes) / static_cast<double>(n);
    std::printf(
        "memory: %llu objects, RSS +%.1f MiB (service empty: +%.1f MiB) = %.1f bytes/object = "
        "%.1f + key (%.0f bytes)\n",
        static_cast<unsigned long long>(n), (rss_full - rss_empty) / 1048576.0,
        (rss_empty - rss_before) / 1048576.0, per_object, per_object - key_len, key_len);
  }
}

// What a standby master holds per object (mooncake/master/ha/standby_state.h), fed the journal
// records of `objects` completed puts of one replica.
void StandbyMemory(int objects) {
  ManualClock clock;
  const int64_t rss_before = RssBytes();
  ha::StandbyState standby(&clock);
  constexpr uint64_t kBase = uint64_t{1} << 30;
  proto::ha::Op op;
  ha::SegmentToProto(1, ClientId{1, 1}, SegmentDesc{"bench:1", kBase, kSegmentSize, 1},
                     op.mutable_mounted());
  (void)standby.ApplyOp(op);
  size_t key_bytes = 0;
  for (int i = 0; i < objects; ++i) {
    const std::string key = Key(7, i);
    key_bytes += key.size();
    const MasterSnapshot::Replica replica{1, kBase + uint64_t{static_cast<uint64_t>(i)} * 4096};
    op.Clear();
    ha::ObjectToProto(key, static_cast<uint64_t>(i) + 1, 4096, 0, {&replica, 1},
                      op.mutable_started());
    (void)standby.ApplyOp(op);
    op.Clear();
    op.mutable_completed()->set_key(key);
    op.mutable_completed()->set_put_id(static_cast<uint64_t>(i) + 1);
    (void)standby.ApplyOp(op);
  }
  const int64_t rss_full = RssBytes();
  const double per_object =
      static_cast<double>(rss_full - rss_before) / static_cast<double>(standby.num_objects());
  const double key_len = static_cast<double>(key_bytes) / static_cast<double>(objects);
  std::printf("standby memory: %zu objects, RSS +%.1f MiB = %.1f bytes/object = %.1f + key\n",
              standby.num_objects(), (rss_full - rss_before) / 1048576.0, per_object,
              per_object - key_len);
}

}  // namespace
}  // namespace mooncake

int main(int argc, char** argv) {
  mooncake::UseProductionMutexMode();
  absl::ParseCommandLine(argc, argv);
  mooncake::SetMinLogLevel(mooncake::LogLevel::WARNING);
  const int objects = absl::GetFlag(FLAGS_objects);
  // Memory first, on a fresh heap.
  if (objects > 0) mooncake::Memory(objects);
  if (objects > 0) mooncake::StandbyMemory(objects);
  mooncake::Throughput(absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_seconds));
  return 0;
}
