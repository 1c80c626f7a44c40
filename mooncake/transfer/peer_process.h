// PeerProcess: runs a helper binary (e.g. transfer_peer) as a child process for multi-process tests
// and benchmarks, waits for its "READY ..." line on stdout, and kills it on destruction.
#ifndef MOONCAKE_TRANSFER_PEER_PROCESS_H_
#define MOONCAKE_TRANSFER_PEER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mooncake {

class PeerProcess {
 public:
  // Start runs `binary args...` and waits up to `timeout` for a stdout line "READY f1 f2 ...".
  static absl::StatusOr<std::unique_ptr<PeerProcess>> Start(const std::string& binary,
                                                            const std::vector<std::string>& args,
                                                            absl::Duration timeout);
  ~PeerProcess();

  // Fields of the READY line after "READY".
  const std::vector<std::string>& ready() const { return ready_; }
  pid_t pid() const { return pid_; }
  // Kill sends `signal` and reaps the child; returns its wait status.
  int Kill(int signal);
  // Stop closes the child's stdin (its cue to exit) and waits for it.
  int Stop();

 private:
  PeerProcess() = default;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::vector<std::string> ready_;
};

// RunfilePath locates a data dependency ("mooncake/transfer/transfer_peer") of a test or of a
// `bazel run` binary, given argv[0] (may be empty inside bazel test).
std::string RunfilePath(const std::string& workspace_relative, const char* argv0 = nullptr);

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_PEER_PROCESS_H_
