// Tests of the etcd backend against a real etcd (Debian's etcd-server) that the test starts on
// free loopback ports with a temporary data directory, and kills at the end.
#include "mooncake/metadata/etcd_metadata_client.h"

#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/test_util.h"
#include "mooncake/metadata/metadata_client.h"

namespace mooncake::metadata {
namespace {

constexpr char kEtcdBinary[] = "/usr/bin/etcd";
// Small, so that the "request too large" path is cheap to exercise.
constexpr int kEtcdMaxRequestBytes = 64 << 10;

// EtcdProcess runs one single-member etcd for the test suite.
class EtcdProcess {
 public:
  ~EtcdProcess() { Kill(); }

  // Start launches etcd and waits until /health says true. On failure returns the reason.
  std::string Start() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string base = tmp != nullptr ? tmp : std::filesystem::temp_directory_path().string();
    std::string dir_template = base + "/etcd_test_XXXXXX";
    if (mkdtemp(dir_template.data()) == nullptr) return "mkdtemp failed";
    dir_ = dir_template;
    client_port_ = UnusedLoopbackPort();
    const int peer_port = UnusedLoopbackPort();
    const std::string client_url = absl::StrCat("http://127.0.0.1:", client_port_);
    const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port);
    std::vector<std::string> args = {
        kEtcdBinary,
        "--name=mc-test",
        "--data-dir=" + dir_ + "/data",
        "--listen-client-urls=" + client_url,
        "--advertise-client-urls=" + client_url,
        "--listen-peer-urls=" + peer_url,
        "--initial-advertise-peer-urls=" + peer_url,
        "--initial-cluster=mc-test=" + peer_url,
        absl::StrCat("--max-request-bytes=", kEtcdMaxRequestBytes),
    };
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const std::string log = log_path();
    const pid_t parent = getpid();

    pid_ = fork();
    if (pid_ < 0) return "fork failed";
    if (pid_ == 0) {
      // Child: only async-signal-safe calls. Die with the test if it crashes.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      execv(kEtcdBinary, argv.data());
      _exit(127);
    }

    httplib::Client health("127.0.0.1", client_port_);
    health.set_connection_timeout(0, 200000);
    health.set_read_timeout(1);
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return absl::StrCat("etcd exited during start-up; log:\n", LogTail());
      }
      auto result = health.Get("/health");
      if (result && result->status == 200 && result->body.find("\"true\"") != std::string::npos) {
        return "";
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return absl::StrCat("etcd not healthy within 15 s; log:\n", LogTail());
  }

  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
      dir_.clear();
    }
  }

  int client_port() const { return client_port_; }

 private:
  std::string log_path() const { return dir_ + "/etcd.log"; }

  std::string LogTail() const {
    std::ifstream in(log_path());
    std::stringstream text;
    text << in.rdbuf();
    std::string all = text.str();
    return all.size() > 4000 ? all.substr(all.size() - 4000) : all;
  }

  pid_t pid_ = -1;
  int client_port_ = 0;
  std::string dir_;
};

class EtcdMetadataClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access(kEtcdBinary, X_OK) != 0) return;
    etcd_ = new EtcdProcess();
    start_error_ = new std::string(etcd_->Start());
  }

  static void TearDownTestSuite() {
    delete etcd_;  // kills etcd and removes its data
    etcd_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }

  void SetUp() override {
    if (etcd_ == nullptr) {
      GTEST_SKIP() << kEtcdBinary
                   << " is not installed (Debian package etcd-server), so the etcd backend "
                      "cannot be tested against a real etcd";
    }
    ASSERT_TRUE(start_error_->empty()) << *start_error_;
  }

  static std::string Endpoint() { return absl::StrCat("127.0.0.1:", etcd_->client_port()); }

  static EtcdProcess* etcd_;
  static std::string* start_error_;
};

EtcdProcess* EtcdMetadataClientTest::etcd_ = nullptr;
std::string* EtcdMetadataClientTest::start_error_ = nullptr;

TEST_F(EtcdMetadataClientTest, RoundTripThroughEtcd) {
  auto client = NewMetadataClient("etcd://" + Endpoint());
  ASSERT_TRUE(client.ok()) << client.status();
  MetadataClient& c = **client;
  const std::string key = "mooncake/ram/10.0.0.1:12345";
  const std::string value = R"({"name":"10.0.0.1:12345","protocol":"rdma","devices":[]})";

  auto missing = c.Get(key);
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  ASSERT_TRUE(c.Put(key, value).ok());
  auto got = c.Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, value);
  ASSERT_TRUE(c.Put(key, "{}").ok());  // overwrite
  EXPECT_EQ(*c.Get(key), "{}");
  ASSERT_TRUE(c.Remove(key).ok());
  absl::Status again = c.Remove(key);
  EXPECT_TRUE(absl::IsNotFound(again)) << again;
  EXPECT_TRUE(absl::IsNotFound(c.Get(key).status()));
}

TEST_F(EtcdMetadataClientTest, BinaryAndEmptyValuesAndPrefixKeysAreExact) {
  auto client = NewMetadataClient(Endpoint());  // bare host:port means etcd too
  ASSERT_TRUE(client.ok()) << client.status();
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  ASSERT_TRUE((*client)->Put("bin", binary).ok());
  EXPECT_EQ(*(*client)->Get("bin"), binary);
  ASSERT_TRUE((*client)->Put("empty", "").ok());
  auto empty = (*client)->Get("empty");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, "");
  // Get and Remove address one key, not a prefix range.
  ASSERT_TRUE((*client)->Put("mooncake/ram/a", "1").ok());
  ASSERT_TRUE((*client)->Put("mooncake/ram/ab", "2").ok());
  EXPECT_EQ(*(*client)->Get("mooncake/ram/a"), "1");
  ASSERT_TRUE((*client)->Remove("mooncake/ram/a").ok());
  EXPECT_EQ(*(*client)->Get("mooncake/ram/ab"), "2");
}

TEST_F(EtcdMetadataClientTest, FailsOverPastDeadEndpoints) {
  const std::string dead = absl::StrCat("127.0.0.1:", UnusedLoopbackPort());
  auto client = NewMetadataClient(absl::StrCat("etcd://", dead, ",", Endpoint()));
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Put("failover", "ok").ok());
  auto got = (*client)->Get("failover");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "ok");
}

TEST_F(EtcdMetadataClientTest, AllEndpointsDownIsEtcdOperationError) {
  const std::string dead1 = absl::StrCat("127.0.0.1:", UnusedLoopbackPort());
  const std::string dead2 = absl::StrCat("127.0.0.1:", UnusedLoopbackPort());
  auto client = NewMetadataClient(absl::StrCat("etcd://", dead1, ",", dead2));
  ASSERT_TRUE(client.ok());
  const absl::Time start = absl::Now();
  absl::Status s = (*client)->Put("k", "v");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(ToErrorCode(s), ErrorCode::ETCD_OPERATION_ERROR) << s;
  EXPECT_NE(s.message().find(dead1), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find(dead2), absl::string_view::npos) << s;
  EXPECT_EQ(ToErrorCode((*client)->Get("k").status()), ErrorCode::ETCD_OPERATION_ERROR);
  EXPECT_EQ(ToErrorCode((*client)->Remove("k")), ErrorCode::ETCD_OPERATION_ERROR);
}

TEST_F(EtcdMetadataClientTest, EtcdRejectionIsEtcdOperationErrorWithItsMessage) {
  auto client = NewMetadataClient("etcd://" + Endpoint());
  ASSERT_TRUE(client.ok());
  absl::Status s = (*client)->Put("too-big", std::string(kEtcdMaxRequestBytes + 1024, 'x'));
  EXPECT_EQ(ToErrorCode(s), ErrorCode::ETCD_OPERATION_ERROR) << s;
  EXPECT_NE(s.message().find("too large"), absl::string_view::npos) << s;
  EXPECT_TRUE((*client)->Put("fits", std::string(32 << 10, 'x')).ok());
}

}  // namespace
}  // namespace mooncake::metadata
