// hicache_workload: a short workload shaped like SGLang HiCache's L3 traffic, against a running
// master / metadata server / storage node, with a progress display and a summary of what it
// measured. Used by the README's first command (tools/run).
//
// Per TP rank a pure client (no segment) registers one page_first host pool, then: warmup
// (put / is_exist / get of 4 KiB), a write phase (batch_is_exist, then batch_put of the missing MHA
// keys "{hash}_{rank}_k" / "_v", 128 pages per batch), a read phase (batch_is_exist prefix, then
// batch_get into a second pool region, every byte verified), and a re-put of existing keys.
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/mutex_mode.h"
#include "mooncake/store/store_client.h"

ABSL_FLAG(std::string, master, "127.0.0.1:50051", "mooncake_master address");
ABSL_FLAG(std::string, metadata, "P2PHANDSHAKE", "metadata server connection string");
ABSL_FLAG(std::string, host, "127.0.0.1", "this client's host");
ABSL_FLAG(int, pages, 1024, "pages per rank (each page is a K and a V object)");
ABSL_FLAG(std::string, object_size, "256kb", "bytes per K or V object");
ABSL_FLAG(int, batch, 128, "pages per batch");
ABSL_FLAG(int, tp, 2, "TP ranks (one client each, run one after the other)");

namespace mooncake {
namespace {

// A 64-hex page hash chain, as SGLang derives from token ids (FNV-based here; only the shape
// matters).
std::string ChainHash(const std::string& prev, int page) {
  uint64_t h = 1469598103934665603ull;
  for (char c : prev) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  h = (h ^ static_cast<uint64_t>(page)) * 1099511628211ull;
  std::string out;
  for (int i = 0; i < 4; ++i) {
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    absl::StrAppendFormat(&out, "%016x", h);
  }
  return out;
}

class Progress {
 public:
  Progress(std::string phase, uint64_t total) : phase_(std::move(phase)), total_(total) {}
  void Update(uint64_t done, uint64_t bytes) {
    if (!isatty(2) && done != total_ && absl::Now() - last_ < absl::Seconds(1)) return;
    last_ = absl::Now();
    double secs = absl::ToDoubleSeconds(absl::Now() - start_);
    int width = 30, filled = total_ ? static_cast<int>(width * done / total_) : width;
    fprintf(stderr, "%s  %-6s [%s%s] %3d%%  %.2f GB/s", isatty(2) ? "\r" : "", phase_.c_str(),
            std::string(filled, '#').c_str(), std::string(width - filled, ' ').c_str(),
            total_ ? static_cast<int>(100 * done / total_) : 100,
            secs > 0 ? bytes / secs / 1e9 : 0);
    if (!isatty(2) || done == total_) fprintf(stderr, "\n");
  }

 private:
  std::string phase_;
  uint64_t total_;
  absl::Time start_ = absl::Now();
  absl::Time last_ = absl::InfinitePast();
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

int Run() {
  const int pages = absl::GetFlag(FLAGS_pages), batch = absl::GetFlag(FLAGS_batch);
  auto object = ParseByteSize(absl::GetFlag(FLAGS_object_size));
  if (!object.ok() || *object == 0 || pages <= 0 || batch <= 0) {
    fprintf(stderr, "hicache_workload: bad --pages/--batch/--object_size\n");
    return 2;
  }
  const uint64_t obj = *object;
  int failures = 0;
  double put_gbps_sum = 0, get_gbps_sum = 0;
  std::vector<double> exist_us, put4k_us, steady_exist_us;
  for (int rank = 0; rank < absl::GetFlag(FLAGS_tp); ++rank) {
    StoreOptions o;
    o.config.master_server_address = absl::GetFlag(FLAGS_master);
    o.config.metadata_server = absl::GetFlag(FLAGS_metadata);
    o.config.local_hostname = absl::GetFlag(FLAGS_host);
    o.config.global_segment_size = 0;  // pure client: the storage node holds the data
    auto store_or = StoreClient::Create(std::move(o));
    if (!store_or.ok()) {
      fprintf(stderr, "hicache_workload: %s\n", store_or.status().ToString().c_str());
      return 1;
    }
    StoreClient& store = **store_or;
    // page_first pool: [pages][K,V] for writing, and a second half to read back into.
    const uint64_t pool_bytes = 2 * (2 * obj * pages) + 4096 * 2;
    std::vector<char> pool(pool_bytes);
    char* write_base = pool.data();
    char* read_base = pool.data() + 2 * obj * pages;
    char* small = read_base + 2 * obj * pages;
    for (uint64_t i = 0; i < 2 * obj * pages; ++i)
      write_base[i] = static_cast<char>((i >> 3) * 131 + rank);
    if (absl::Status s = store.RegisterBuffer(pool.data(), pool.size()); !s.ok()) {
      fprintf(stderr, "register_buffer: %s\n", s.ToString().c_str());
      return 1;
    }
    // Warmup, as SGLang does it.
    const std::string warm = absl::StrCat("sglang_mooncake_store_warmup_key", rank, "_", getpid());
    memset(small, 'w', 4096);
    int rc = store.BatchPut({warm}, {{{small, 4096}}}, ReplicateConfig())[0];
    bool warm_ok = rc == 0 && store.BatchIsExist({warm})[0] == 1 &&
                   store.BatchGet({warm}, {{{small + 4096, 4096}}})[0] == 4096 &&
                   memcmp(small, small + 4096, 4096) == 0;
    if (!warm_ok) {
      fprintf(stderr, "rank %d: warmup failed (put rc %d)\n", rank, rc);
      return 1;
    }
    for (int i = 0; i < 50; ++i) {
      absl::Time t = absl::Now();
      store.BatchPut({absl::StrCat(warm, "_lat", i)}, {{{small, 4096}}}, ReplicateConfig());
      put4k_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t));
    }
    std::vector<std::string> hashes;
    std::string prev = absl::StrCat("rank-independent-root-", getpid());
    for (int p = 0; p < pages; ++p) hashes.push_back(prev = ChainHash(prev, p));
    auto keys_for = [&](int first, int count) {
      std::vector<std::string> keys;
      for (int p = first; p < first + count; ++p) {
        keys.push_back(absl::StrCat(hashes[p], "_", rank, "_k"));
        keys.push_back(absl::StrCat(hashes[p], "_", rank, "_v"));
      }
      return keys;
    };
    // Write phase.
    Progress put_progress(absl::StrCat("put r", rank), pages);
    absl::Time start = absl::Now();
    uint64_t bytes = 0;
    for (int first = 0; first < pages; first += batch) {
      int count = std::min(batch, pages - first);
      std::vector<std::string> keys = keys_for(first, count);
      absl::Time t = absl::Now();
      std::vector<int> exists = store.BatchIsExist(keys);
      exist_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t));
      std::vector<std::string> missing;
      std::vector<std::vector<BufferRef>> bufs;
      for (size_t k = 0; k < keys.size(); ++k) {
        if (exists[k] == 1) continue;
        missing.push_back(keys[k]);
        bufs.push_back({{write_base + (2 * static_cast<uint64_t>(first) + k) * obj, obj}});
      }
      for (int r : store.BatchPut(missing, bufs, ReplicateConfig())) failures += r != 0;
      bytes += missing.size() * obj;
      put_progress.Update(first + count, bytes);
    }
    put_gbps_sum += bytes / absl::ToDoubleSeconds(absl::Now() - start) / 1e9;
    // Read phase: prefix of existing pages, then batch_get, then verify every byte.
    Progress get_progress(absl::StrCat("get r", rank), pages);
    start = absl::Now();
    bytes = 0;
    for (int first = 0; first < pages; first += batch) {
      int count = std::min(batch, pages - first);
      std::vector<std::string> keys = keys_for(first, count);
      absl::Time t = absl::Now();
      std::vector<int> exists = store.BatchIsExist(keys);
      exist_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t));
      size_t prefix = 0;
      while (prefix < exists.size() && exists[prefix] == 1) ++prefix;
      keys.resize(prefix);
      std::vector<std::vector<BufferRef>> bufs;
      for (size_t k = 0; k < keys.size(); ++k) {
        bufs.push_back({{read_base + (2 * static_cast<uint64_t>(first) + k) * obj, obj}});
      }
      std::vector<int64_t> got = store.BatchGet(keys, bufs);
      for (size_t k = 0; k < got.size(); ++k) {
        if (got[k] != static_cast<int64_t>(obj)) ++failures;
      }
      failures += static_cast<int>(2 * count - prefix);
      bytes += prefix * obj;
      get_progress.Update(first + count, bytes);
    }
    get_gbps_sum += bytes / absl::ToDoubleSeconds(absl::Now() - start) / 1e9;
    if (memcmp(write_base, read_base, 2 * obj * pages) != 0) {
      fprintf(stderr, "rank %d: bytes read back differ from bytes written\n", rank);
      ++failures;
    }
    // Steady-state exists latency: 256 keys (128 pages), present.
    std::vector<std::string> probe = keys_for(0, std::min(batch, pages));
    for (int i = 0; i < 200; ++i) {
      absl::Time t = absl::Now();
      store.BatchIsExist(probe);
      steady_exist_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t));
    }
    // Re-putting existing keys is a no-op success.
    std::vector<std::string> again = keys_for(0, std::min(batch, pages));
    std::vector<std::vector<BufferRef>> again_bufs(again.size(), {{write_base, obj}});
    for (int r : store.BatchPut(again, again_bufs, ReplicateConfig())) failures += r != 0;
  }
  const int tp = absl::GetFlag(FLAGS_tp);
  printf(
      "\nHiCache-shaped workload: %d rank(s) x %d pages x 2 objects of %s, batches of %d pages\n",
      tp, pages, FormatByteSize(obj).c_str(), batch);
  printf("  batch_put_from    %.2f GB/s (mean over ranks)\n", put_gbps_sum / tp);
  printf("  batch_get_into    %.2f GB/s (mean over ranks), bytes verified\n", get_gbps_sum / tp);
  printf("  batch_is_exist    p50 %.0f us, p99 %.0f us during the phases (%d keys)\n",
         Percentile(exist_us, 0.5), Percentile(exist_us, 0.99), 2 * batch);
  printf("  batch_is_exist    p50 %.0f us, p99 %.0f us steady state (%d keys, 200 calls)\n",
         Percentile(steady_exist_us, 0.5), Percentile(steady_exist_us, 0.99), 2 * batch);
  printf("  4 KiB put_from    p50 %.0f us, p99 %.0f us\n", Percentile(put4k_us, 0.5),
         Percentile(put4k_us, 0.99));
  printf("  failures          %d\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace mooncake

int main(int argc, char** argv) {
  mooncake::UseProductionMutexMode();
  absl::ParseCommandLine(argc, argv);
  return mooncake::Run();
}
