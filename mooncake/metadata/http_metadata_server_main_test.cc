// Tests of the http_metadata_server binary as a user runs it: flags, the logged address, serving,
// a clear failure when the port is taken, and a clean exit on SIGINT / SIGTERM.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mooncake/metadata/raw_http_connection.h"

namespace mooncake::metadata {
namespace {

std::string BinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    return absl::StrCat(srcdir, "/", workspace, "/mooncake/metadata/http_metadata_server");
  }
  return "bazel-bin/mooncake/metadata/http_metadata_server";  // run by hand from the repo root
}

// ServerProcess runs the binary with its stderr captured.
class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> args) {
    args.insert(args.begin(), BinaryPath());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(fds[1], STDERR_FILENO);
      dup2(fds[1], STDOUT_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_fd_ = fds[0];
  }

  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
  }

  // ReadUntil collects output until it contains `text` or the deadline passes.
  bool ReadUntil(const std::string& text, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (output_.find(text) == std::string::npos) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      pollfd pfd{out_fd_, POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) continue;
      char buf[4096];
      ssize_t n = read(out_fd_, buf, sizeof(buf));
      if (n <= 0) return output_.find(text) != std::string::npos;
      output_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  // Port parses the port from the "listening on http://127.0.0.1:PORT/metadata" line.
  int Port() const {
    const std::string marker = "listening on http://127.0.0.1:";
    size_t pos = output_.find(marker);
    if (pos == std::string::npos) return 0;
    pos += marker.size();
    int port = 0;
    absl::SimpleAtoi(output_.substr(pos, output_.find('/', pos) - pos), &port);
    return port;
  }

  // Wait returns the exit status (as from waitpid), or -1 if it did not exit in time.
  int Wait(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ReadUntil("\x01never", absl::Milliseconds(100));  // drain the remaining output
        return status;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }

  void Signal(int sig) { kill(pid_, sig); }
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string output_;
};

void ServeThenStopWith(int sig) {
  ServerProcess server({"--host", "127.0.0.1", "--port", "0"});
  ASSERT_TRUE(server.ReadUntil("/metadata", absl::Seconds(5))) << server.output();
  const int port = server.Port();
  ASSERT_GT(port, 0) << server.output();
  auto response =
      RawHttpExchange(port, "PUT /metadata?key=a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  server.Signal(sig);
  int status = server.Wait(absl::Seconds(5));
  ASSERT_NE(status, -1) << "did not exit after signal " << sig;
  ASSERT_TRUE(WIFEXITED(status)) << server.output();
  EXPECT_EQ(WEXITSTATUS(status), 0) << server.output();
  EXPECT_NE(server.output().find("shutting down"), std::string::npos) << server.output();
}

TEST(HttpMetadataServerMainTest, ServesAndExitsCleanlyOnSigterm) { ServeThenStopWith(SIGTERM); }

TEST(HttpMetadataServerMainTest, ServesAndExitsCleanlyOnSigint) { ServeThenStopWith(SIGINT); }

TEST(HttpMetadataServerMainTest, TakenPortFailsWithAClearMessage) {
  ServerProcess first({"--host", "127.0.0.1", "--port", "0"});
  ASSERT_TRUE(first.ReadUntil("/metadata", absl::Seconds(5))) << first.output();
  const std::string port = std::to_string(first.Port());
  ServerProcess second({"--host", "127.0.0.1", "--port", port});
  int status = second.Wait(absl::Seconds(5));
  ASSERT_TRUE(WIFEXITED(status)) << second.output();
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(second.output().find("127.0.0.1:" + port), std::string::npos) << second.output();
  EXPECT_NE(second.output().find("in use"), std::string::npos) << second.output();
}

TEST(HttpMetadataServerMainTest, HelpDescribesTheFlags) {
  ServerProcess help({"--help"});
  int status = help.Wait(absl::Seconds(5));
  ASSERT_TRUE(WIFEXITED(status));  // abseil 20220623 exits with 1 after --help
  EXPECT_NE(help.output().find("--port"), std::string::npos) << help.output();
  EXPECT_NE(help.output().find("--host"), std::string::npos) << help.output();
}

}  // namespace
}  // namespace mooncake::metadata
