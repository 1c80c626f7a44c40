// transfer_bench: TransferEngine bandwidth per route, each beside its baseline measured in this
// run.
//
//   bazel run -c opt //mooncake/transfer:transfer_bench -- [--seconds=0.4] [--sizes=64kb,1mb,4mb]
//
// Routes: same-process memcpy ("local"), another process on this host through shared memory
// ("shm"), and the same process pair forced onto TCP ("tcp"). Baselines: single-thread memcpy over
// the same working set for local and shm; a plain blocking TCP socket pair between two processes
// moving the same message sizes for tcp (and iperf3, if installed). Prints a markdown table.
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/transfer/peer_process.h"
#include "mooncake/transfer/transfer_engine.h"

ABSL_FLAG(double, seconds, 0.4, "measuring time per row");
ABSL_FLAG(std::string, sizes, "64kb,1mb,4mb", "request sizes");
ABSL_FLAG(std::string, depths, "1,32", "requests per batch");
ABSL_FLAG(std::string, routes, "local,shm,tcp", "routes to measure");
ABSL_FLAG(bool, iperf3, true, "also run iperf3 over loopback if it is installed");

namespace mooncake {
namespace {

using Op = TransferRequest::Opcode;
constexpr uint64_t kWorkingSet = 256ull << 20;  // larger than any cache, same for every row

double Gbps(uint64_t bytes, absl::Duration d) { return bytes / absl::ToDoubleSeconds(d) / 1e9; }

// Runs `step` (which moves `bytes_per_step`) until `seconds` pass; returns GB/s.
template <typename F>
double Measure(uint64_t bytes_per_step, F step) {
  step();  // warm up: first-touch faults and connection setup are not what we measure
  const absl::Duration budget = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  uint64_t bytes = 0;
  absl::Time start = absl::Now();
  absl::Duration elapsed;
  do {
    step();
    bytes += bytes_per_step;
    elapsed = absl::Now() - start;
  } while (elapsed < budget);
  return Gbps(bytes, elapsed);
}

double MemcpyBaseline(char* dst, char* src, uint64_t size, int depth) {
  uint64_t off = 0;
  return Measure(size * depth, [&] {
    for (int i = 0; i < depth; ++i) {
      if (off + size > kWorkingSet) off = 0;
      memcpy(dst + off, src + off, size);
      off += size;
    }
  });
}

// A plain socket pair between this process and a forked child: one connection, blocking send of
// `size`-byte messages on one side, recv(MSG_WAITALL) on the other. Both directions are the same
// work, so one number serves READ and WRITE.
double SocketPairBaseline(uint64_t size) {
  int port = 0;
  absl::StatusOr<int> listener = ListenTcp("127.0.0.1", 0, &port);
  if (!listener.ok()) return 0;
  pid_t child = fork();
  if (child == 0) {
    absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", port, absl::Seconds(3));
    if (!fd.ok()) _exit(1);
    std::vector<char> buf(size);
    while (RecvAll(*fd, buf.data(), size).ok()) {
    }
    _exit(0);
  }
  int fd = accept(*listener, nullptr, nullptr);
  close(*listener);
  std::vector<char> buf(kWorkingSet);
  memset(buf.data(), 1, buf.size());
  uint64_t off = 0;
  double gbps = Measure(size, [&] {
    if (off + size > kWorkingSet) off = 0;
    SendAll(fd, buf.data() + off, size).IgnoreError();
    off += size;
  });
  close(fd);
  waitpid(child, nullptr, 0);
  return gbps;
}

double Iperf3() {
  if (access("/usr/bin/iperf3", X_OK) != 0) return 0;
  const int port = 15201 + getpid() % 1000;
  std::string server =
      absl::StrFormat("/usr/bin/iperf3 -s -1 -B 127.0.0.1 -p %d >/dev/null 2>&1 &", port);
  if (system(server.c_str()) != 0) return 0;
  usleep(300 * 1000);
  std::string cmd = absl::StrFormat(
      "/usr/bin/iperf3 -c 127.0.0.1 -p %d -t 2 -f g 2>/dev/null | grep receiver", port);
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return 0;
  char line[512] = {0};
  double gbits = 0;
  if (fgets(line, sizeof(line), p) != nullptr) {
    // "... 2.00-... sec  4.5 GBytes  19.3 Gbits/sec  receiver"
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    for (size_t i = 1; i < words.size(); ++i) {
      if (words[i] == "Gbits/sec") absl::SimpleAtod(words[i - 1], &gbits);
    }
  }
  pclose(p);
  return gbits / 8;  // GB/s
}

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::vector<uint64_t> sizes;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',')) {
    auto v = ParseByteSize(s);
    if (!v.ok()) {
      fprintf(stderr, "%s\n", v.status().ToString().c_str());
      return 2;
    }
    sizes.push_back(*v);
  }
  std::vector<int> depths;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_depths), ',')) {
    int d = 0;
    if (!absl::SimpleAtoi(s, &d) || d < 1) return 2;
    depths.push_back(d);
  }
  std::vector<std::string> routes = absl::StrSplit(absl::GetFlag(FLAGS_routes), ',');

  TransferEngineOptions opts;
  opts.local_server_name = "127.0.0.1";
  auto engine_or = TransferEngine::Create(opts);
  opts.allow_shm = false;
  opts.allow_local_memcpy = false;
  auto tcp_engine_or = TransferEngine::Create(opts);
  if (!engine_or.ok() || !tcp_engine_or.ok()) {
    fprintf(stderr, "cannot start engines\n");
    return 1;
  }
  auto& engine = *engine_or;
  auto& tcp_engine = *tcp_engine_or;
  std::vector<char> local(kWorkingSet), own_segment(kWorkingSet);
  memset(local.data(), 7, local.size());
  memset(own_segment.data(), 3, own_segment.size());
  for (auto* e : {engine.get(), tcp_engine.get()}) {
    if (!e->RegisterLocalMemory(local.data(), local.size(), "cpu:0", false).ok()) return 1;
  }
  if (!engine->RegisterLocalMemory(own_segment.data(), own_segment.size()).ok()) return 1;

  auto peer = PeerProcess::Start(RunfilePath("mooncake/transfer/transfer_peer", argv[0]),
                                 {"--size=256mb", "--shm=true", "--fill=1"}, absl::Seconds(20));
  if (!peer.ok()) {
    fprintf(stderr, "cannot start transfer_peer: %s\n", peer.status().ToString().c_str());
    return 1;
  }
  uint64_t peer_addr = 0;
  absl::SimpleAtoi((*peer)->ready()[1], &peer_addr);
  const std::string peer_name = (*peer)->ready()[0];

  fprintf(stderr, "measuring baselines...\n");
  std::vector<char> scratch(kWorkingSet, 1);
  std::map<std::pair<uint64_t, int>, double> memcpy_base;
  std::map<uint64_t, double> socket_base;
  for (uint64_t size : sizes) {
    for (int depth : depths) {
      memcpy_base[{size, depth}] = MemcpyBaseline(scratch.data(), local.data(), size, depth);
    }
    socket_base[size] = SocketPairBaseline(size);
  }
  double iperf = absl::GetFlag(FLAGS_iperf3) ? Iperf3() : 0;

  printf("| route | op | size | depth | GB/s | baseline | baseline GB/s | ratio |\n");
  printf("|---|---|---|---|---|---|---|---|\n");
  for (const std::string& route : routes) {
    TransferEngine* e = route == "tcp" ? tcp_engine.get() : engine.get();
    std::string target = route == "local" ? engine->segment_name() : peer_name;
    uint64_t base = route == "local" ? reinterpret_cast<uint64_t>(own_segment.data()) : peer_addr;
    auto seg = e->OpenSegment(target);
    if (!seg.ok()) {
      fprintf(stderr, "open %s: %s\n", target.c_str(), seg.status().ToString().c_str());
      return 1;
    }
    for (Op op : {Op::kWrite, Op::kRead}) {
      for (uint64_t size : sizes) {
        for (int depth : depths) {
          uint64_t off = 0;
          bool failed = false;
          std::vector<TransferRequest> reqs(depth);
          double gbps = Measure(size * depth, [&] {
            for (int i = 0; i < depth; ++i) {
              if (off + size > kWorkingSet) off = 0;
              reqs[i] = {op, local.data() + off, *seg, base + off, size};
              off += size;
            }
            for (const absl::Status& s : e->Transfer(reqs)) {
              if (!s.ok() && !failed) {
                fprintf(stderr, "transfer failed: %s\n", s.ToString().c_str());
                failed = true;
              }
            }
          });
          double b = route == "tcp" ? socket_base[size] : memcpy_base[{size, depth}];
          const char* bname = route == "tcp" ? "tcp socket pair" : "memcpy 1 thread";
          printf("| %s | %s | %s | %d | %.2f | %s | %.2f | %.2f |\n", route.c_str(),
                 op == Op::kWrite ? "WRITE" : "READ", FormatByteSize(size).c_str(), depth,
                 failed ? 0.0 : gbps, bname, b, b > 0 ? gbps / b : 0.0);
          fflush(stdout);
          fprintf(stderr, "  %s %s %s x%d: %.2f GB/s\n", route.c_str(),
                  op == Op::kWrite ? "WRITE" : "READ", FormatByteSize(size).c_str(), depth, gbps);
        }
      }
    }
  }
  if (iperf > 0) printf("\niperf3 loopback (1 stream, same run): %.2f GB/s\n", iperf);
  (*peer)->Stop();
  return 0;
}

}  // namespace
}  // namespace mooncake

int main(int argc, char** argv) { return mooncake::Main(argc, argv); }
