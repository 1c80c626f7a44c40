// Runs the real mooncake_master binary on free loopback ports and drives it the way a store client
// and an operator would: gRPC through GrpcMasterClient, the HTTP endpoints, bad flags, --help,
// signals, and a master killed and restarted under a connected client.
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/test_util.h"
#include "mooncake/master/grpc_master_client.h"

extern char** environ;

namespace mooncake {

void PrintTo(ErrorCode code, std::ostream* os) { *os << ErrorCodeName(code); }

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr ClientId kClient{0xabc, 0xdef};
constexpr uint64_t kBase = 0x7f0000000000;
constexpr uint64_t kMiB = 1 << 20;

std::string BinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir ? srcdir : ".", "/mooncake_cpp/mooncake/master/mooncake_master");
}

std::string TempPath(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp ? tmp : "/tmp", "/", name);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One run of the binary with stdout and stderr captured in files.
class Process {
 public:
  Process(const std::vector<std::string>& flags, const std::string& tag) {
    static int counter = 0;
    const std::string base = absl::StrCat(tag, "_", ++counter);
    out_path_ = TempPath(base + ".out");
    err_path_ = TempPath(base + ".err");
    std::vector<std::string> args = {BinaryPath()};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0) << "cannot run " << argv[0];
    if (rc != 0) pid_ = -1;
  }

  ~Process() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait(absl::Seconds(5));
    }
  }

  // Waits until the banner is printed (true) or the process exits (false).
  bool WaitReady(absl::Duration timeout = absl::Seconds(15)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (absl::StrContains(out(), "serving gRPC")) return true;
      if (Poll()) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  // Exit code once it exits (128 + signal if killed), or -1 on timeout.
  int Wait(absl::Duration timeout = absl::Seconds(15)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!Poll()) {
      if (absl::Now() > deadline) return -1;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return exit_code_;
  }

  void Signal(int sig) { kill(pid_, sig); }
  std::string out() const { return ReadFile(out_path_); }
  std::string err() const { return ReadFile(err_path_); }

 private:
  bool Poll() {
    if (exited_) return true;
    if (pid_ <= 0) return exited_ = true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exited_ = true;
  }

  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string out_path_, err_path_;
};

// A master on loopback with its own free ports.
struct Ports {
  int grpc = UnusedLoopbackPort();
  int metrics = UnusedLoopbackPort();
  int metadata = UnusedLoopbackPort();
  std::vector<std::string> Flags() const {
    return {"--bind_address=127.0.0.1", absl::StrCat("--port=", grpc),
            absl::StrCat("--metrics_port=", metrics)};
  }
};

std::unique_ptr<GrpcMasterClient> Connect(int port) {
  GrpcMasterClientOptions options;
  options.address = absl::StrCat("127.0.0.1:", port);
  options.rpc_timeout = absl::Seconds(2);
  return std::move(*GrpcMasterClient::Create(options));
}

// Local addresses of the listening TCP sockets on `port` (hex as in /proc/net/tcp*).
std::vector<std::string> ListeningAddresses(int port) {
  std::vector<std::string> out;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::istringstream lines(ReadFile(table));
    std::string line;
    std::getline(lines, line);  // header
    while (std::getline(lines, line)) {
      std::vector<std::string> fields =
          absl::StrSplit(absl::StripAsciiWhitespace(line), ' ', absl::SkipEmpty());
      if (fields.size() < 4 || fields[3] != "0A") continue;  // 0A = LISTEN
      std::vector<std::string> addr = absl::StrSplit(fields[1], ':');
      int p = 0;
      if (addr.size() == 2 && absl::SimpleHexAtoi(addr[1], &p) && p == port) {
        // An IPv6 socket bound to ::ffff:127.0.0.1 is the IPv4 loopback too.
        constexpr absl::string_view kMappedPrefix = "0000000000000000FFFF0000";
        if (absl::StartsWith(addr[0], kMappedPrefix))
          addr[0] = addr[0].substr(kMappedPrefix.size());
        out.push_back(addr[0]);
      }
    }
  }
  return out;
}

TEST(MooncakeMasterTest, ServesGrpcAndHttpAndStopsOnSigterm) {
  Ports ports;
  Process master(ports.Flags(), "serve");
  ASSERT_TRUE(master.WaitReady()) << master.err();
  EXPECT_THAT(master.out(), HasSubstr(absl::StrCat("127.0.0.1:", ports.grpc)));

  auto client = Connect(ports.grpc);
  ASSERT_TRUE(client->MountSegment(kClient, {"127.0.0.1:17001", kBase, 256 * kMiB}).ok());
  std::vector<std::string> keys;
  for (int i = 0; i < 256; ++i) keys.push_back(absl::StrCat("hash", i, "_0_k"));
  std::vector<uint64_t> sizes(keys.size(), kMiB);
  auto started = client->BatchPutStart(keys, sizes, ReplicateConfig{}, {});
  ASSERT_TRUE(started.ok()) << started.status();
  for (const ObjectReplicas& o : *started) ASSERT_EQ(o.error, ErrorCode::OK);
  ASSERT_TRUE(client->BatchPutEnd(keys, {}).ok());
  auto exist = client->BatchExistKey(keys);
  ASSERT_TRUE(exist.ok());
  EXPECT_EQ(std::count(exist->begin(), exist->end(), ErrorCode::OK), 256);
  // Putting existing keys again changes nothing.
  auto again = client->BatchPutStart(keys, sizes, ReplicateConfig{}, {});
  EXPECT_EQ((*again)[0].error, ErrorCode::OBJECT_ALREADY_EXISTS);

  httplib::Client http("127.0.0.1", ports.metrics);
  auto segments = http.Get("/get_all_segments");
  ASSERT_TRUE(segments);
  EXPECT_EQ(segments->body, "127.0.0.1:17001\n");
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("mooncake_master_objects 256\n"));
  EXPECT_THAT(metrics->body, HasSubstr("mooncake_master_allocated_bytes 268435456\n"));
  EXPECT_EQ(http.Get("/health")->status, 200);

  master.Signal(SIGTERM);
  EXPECT_EQ(master.Wait(), 0) << master.err();
}

TEST(MooncakeMasterTest, EveryListenerHonoursBindAddress) {
  Ports ports;
  std::vector<std::string> flags = ports.Flags();
  flags.push_back("--enable_http_metadata_server");
  flags.push_back(absl::StrCat("--http_metadata_server_port=", ports.metadata));
  Process master(flags, "bind");
  ASSERT_TRUE(master.WaitReady()) << master.err();
  for (int port : {ports.grpc, ports.metrics, ports.metadata}) {
    EXPECT_THAT(ListeningAddresses(port), ElementsAre("0100007F")) << "port " << port;
  }
  httplib::Client metadata("127.0.0.1", ports.metadata);
  auto health = metadata.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST(MooncakeMasterTest, KilledAndRestartedMasterAsksClientsToRemount) {
  Ports ports;
  std::unique_ptr<GrpcMasterClient> client;
  {
    Process master(ports.Flags(), "restart_a");
    ASSERT_TRUE(master.WaitReady()) << master.err();
    client = Connect(ports.grpc);
    ASSERT_TRUE(client->MountSegment(kClient, {"127.0.0.1:17002", kBase, 64 * kMiB}).ok());
    ASSERT_TRUE(client->BatchPutStart({"before"}, {kMiB}, ReplicateConfig{}, {}).ok());
    ASSERT_TRUE(client->BatchPutEnd({"before"}, {}).ok());
    EXPECT_FALSE(client->Heartbeat(kClient)->need_remount);
    master.Signal(SIGKILL);
    EXPECT_EQ(master.Wait(), 128 + SIGKILL);
  }
  // Master down: every call fails promptly with an RPC error, none hangs.
  absl::Time start = absl::Now();
  auto hb = client->Heartbeat(kClient);
  ErrorCode code = ToErrorCode(hb.status());
  EXPECT_TRUE(code == ErrorCode::RPC_FAIL || code == ErrorCode::RPC_TIMEOUT) << hb.status();
  code = ToErrorCode(client->BatchExistKey({"before"}).status());
  EXPECT_TRUE(code == ErrorCode::RPC_FAIL || code == ErrorCode::RPC_TIMEOUT);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  Process restarted(ports.Flags(), "restart_b");
  ASSERT_TRUE(restarted.WaitReady()) << restarted.err();
  start = absl::Now();
  // The channel reconnects on its own; the new master does not know the client.
  absl::StatusOr<HeartbeatResult> beat;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    beat = client->Heartbeat(kClient);
    if (!beat.ok()) absl::SleepFor(absl::Milliseconds(50));
  } while (!beat.ok() && absl::Now() < deadline);
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << "reconnecting took too long";
  EXPECT_TRUE(beat->need_remount);
  EXPECT_THAT(*client->BatchExistKey({"before"}), ElementsAre(ErrorCode::OBJECT_NOT_FOUND));
  ASSERT_TRUE(client->RemountSegment(kClient, {{"127.0.0.1:17002", kBase, 64 * kMiB}}).ok());
  EXPECT_FALSE(client->Heartbeat(kClient)->need_remount);
  auto put = client->BatchPutStart({"after"}, {kMiB}, ReplicateConfig{}, {});
  ASSERT_TRUE(put.ok());
  EXPECT_EQ((*put)[0].error, ErrorCode::OK);
}

TEST(MooncakeMasterTest, SilentClientIsUnmounted) {
  Ports ports;
  std::vector<std::string> flags = ports.Flags();
  flags.push_back("--client_ttl=1");
  Process master(flags, "ttl");
  ASSERT_TRUE(master.WaitReady()) << master.err();
  auto client = Connect(ports.grpc);
  ASSERT_TRUE(client->MountSegment(kClient, {"127.0.0.1:17003", kBase, 64 * kMiB}).ok());
  ASSERT_TRUE(client->BatchPutStart({"k"}, {kMiB}, ReplicateConfig{}, {}).ok());
  ASSERT_TRUE(client->BatchPutEnd({"k"}, {}).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!client->ListSegments()->empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(client->ListSegments()->empty());
  EXPECT_THAT(*client->BatchExistKey({"k"}), ElementsAre(ErrorCode::OBJECT_NOT_FOUND));
  EXPECT_TRUE(client->Heartbeat(kClient)->need_remount);
  httplib::Client http("127.0.0.1", ports.metrics);
  EXPECT_EQ(http.Get("/get_all_segments")->body, "");
}

TEST(MooncakeMasterTest, BadFlagsExitWithClearErrors) {
  struct Case {
    std::string flag;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"--port=0", "--port=0: not a port"},
      {"--port=70000", "--port=70000: not a port"},
      {"--metrics_port=-5", "--metrics_port=-5"},
      {"--eviction_high_watermark_ratio=1.5", "--eviction_high_watermark_ratio=1.5"},
      {"--eviction_high_watermark_ratio=0", "--eviction_high_watermark_ratio=0"},
      {"--eviction_ratio=2", "--eviction_ratio=2"},
      {"--client_ttl=0", "--client_ttl=0"},
      {"--default_kv_lease_ttl=0", "--default_kv_lease_ttl=0"},
      {"--bind_address=nowhere", "--bind_address"},
      {"--enable_ha", "--etcd_endpoints"},
  };
  for (const Case& c : cases) {
    Process p({c.flag}, "badflag");
    EXPECT_EQ(p.Wait(), 2) << c.flag;
    EXPECT_THAT(p.err(), HasSubstr(c.message)) << c.flag;
  }
  Process not_a_number({"--port=abc"}, "badflag");
  EXPECT_NE(not_a_number.Wait(), 0);
  EXPECT_THAT(not_a_number.err(), HasSubstr("port"));
}

TEST(MooncakeMasterTest, HelpDocumentsTheFlags) {
  Process help({"--help"}, "help");
  help.Wait();
  const std::string text = help.out() + help.err();
  for (const char* flag :
       {"--port", "--bind_address", "--rpc_thread_num", "--default_kv_lease_ttl",
        "--eviction_high_watermark_ratio", "--eviction_ratio", "--client_ttl", "--metrics_port",
        "--enable_http_metadata_server", "--http_metadata_server_port",
        "--http_metadata_server_host", "--enable_ha", "--etcd_endpoints", "--cluster_id"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat(flag, " ("))) << flag;
  }
  EXPECT_THAT(text, HasSubstr("default: 50051"));
  EXPECT_THAT(text, HasSubstr("default: 9003"));
}

TEST(MooncakeMasterTest, PortInUseFailsToStart) {
  Ports ports;
  Process first(ports.Flags(), "inuse_a");
  ASSERT_TRUE(first.WaitReady()) << first.err();
  std::vector<std::string> flags = {"--bind_address=127.0.0.1", absl::StrCat("--port=", ports.grpc),
                                    absl::StrCat("--metrics_port=", UnusedLoopbackPort())};
  Process second(flags, "inuse_b");
  EXPECT_EQ(second.Wait(), 1);
  EXPECT_THAT(second.err(), HasSubstr(absl::StrCat("cannot serve gRPC on 127.0.0.1:", ports.grpc)));
}

}  // namespace
}  // namespace mooncake
