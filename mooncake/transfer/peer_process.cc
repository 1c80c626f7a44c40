#include "mooncake/transfer/peer_process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mooncake {

absl::StatusOr<std::unique_ptr<PeerProcess>> PeerProcess::Start(
    const std::string& binary, const std::vector<std::string>& args, absl::Duration timeout) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError("pipe failed");
  }
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  std::unique_ptr<PeerProcess> p(new PeerProcess());
  p->pid_ = pid;
  p->stdin_fd_ = in[1];
  p->stdout_fd_ = out[0];
  std::string buffer;
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    size_t nl;
    while ((nl = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      if (line.rfind("READY", 0) == 0) {
        std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
        p->ready_.assign(fields.begin() + 1, fields.end());
        return p;
      }
    }
    int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0) return absl::DeadlineExceededError(absl::StrCat(binary, " did not get ready"));
    pollfd pfd{p->stdout_fd_, POLLIN, 0};
    if (poll(&pfd, 1, ms) <= 0) continue;
    char chunk[1024];
    ssize_t n = read(p->stdout_fd_, chunk, sizeof(chunk));
    if (n <= 0) return absl::InternalError(absl::StrCat(binary, " exited before getting ready"));
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

int PeerProcess::Kill(int signal) {
  if (!reaped_) {
    kill(pid_, signal);
    waitpid(pid_, &status_, 0);
    reaped_ = true;
  }
  return status_;
}

int PeerProcess::Stop() {
  if (stdin_fd_ >= 0) {
    close(stdin_fd_);
    stdin_fd_ = -1;
  }
  if (!reaped_) {
    // Give it a moment to exit on its own, then insist.
    for (int i = 0; i < 500; ++i) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        reaped_ = true;
        return status_;
      }
      usleep(10000);
    }
    return Kill(SIGKILL);
  }
  return status_;
}

PeerProcess::~PeerProcess() {
  Kill(SIGKILL);
  if (stdin_fd_ >= 0) close(stdin_fd_);
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

std::string RunfilePath(const std::string& rel, const char* argv0) {
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
    return absl::StrCat(srcdir, "/mooncake_cpp/", rel);
  }
  if (const char* dir = std::getenv("RUNFILES_DIR"))
    return absl::StrCat(dir, "/mooncake_cpp/", rel);
  if (argv0 != nullptr) {
    std::string candidate = absl::StrCat(argv0, ".runfiles/mooncake_cpp/", rel);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return rel;
}

}  // namespace mooncake
