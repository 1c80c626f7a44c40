// http_metadata_server: the standalone HTTP metadata server (docs/compatibility.md section 6).
//
//   bazel run //mooncake/metadata:http_metadata_server -- --port 8080 --host 127.0.0.1
//
// Serves until SIGINT or SIGTERM, then stops cleanly and exits 0.
#include <signal.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/logging.h"
#include "mooncake/common/mutex_mode.h"
#include "mooncake/metadata/http_metadata_server.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to bind (only this one), e.g. 127.0.0.1.");
ABSL_FLAG(int, port, 8080, "TCP port to listen on; 0 picks a free one (logged at start).");
ABSL_FLAG(int64_t, max_body_bytes, 16 << 20, "Largest PUT body accepted (bytes); larger gets 413.");
ABSL_FLAG(int64_t, max_keys, 1 << 20, "Most keys stored; a PUT of a new key beyond gets 507.");
ABSL_FLAG(int64_t, max_total_bytes, int64_t{1} << 30,
          "Most bytes of keys and values stored; a PUT beyond gets 507.");
ABSL_FLAG(int64_t, max_inflight_bytes, int64_t{256} << 20,
          "Most bytes of request bodies being received at once; beyond gets 503.");

int main(int argc, char** argv) {
  mooncake::UseProductionMutexMode();
  absl::SetProgramUsageMessage(
      "HTTP metadata server for Mooncake transfer engines.\n"
      "  GET|PUT|DELETE /metadata?key=K, GET /health\n"
      "Usage: http_metadata_server [--host 0.0.0.0] [--port 8080]");
  absl::ParseCommandLine(argc, argv);

  if (absl::GetFlag(FLAGS_max_body_bytes) <= 0 || absl::GetFlag(FLAGS_max_keys) <= 0 ||
      absl::GetFlag(FLAGS_max_total_bytes) <= 0 || absl::GetFlag(FLAGS_max_inflight_bytes) <= 0) {
    std::fprintf(stderr,
                 "--max_body_bytes, --max_keys, --max_total_bytes and --max_inflight_bytes must "
                 "be positive\n");
    return 2;
  }

  // Block the stop signals before any thread starts, so every thread inherits the mask and
  // sigwait below is the only place they are delivered.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  mooncake::metadata::HttpMetadataServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.max_body_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_body_bytes));
  options.max_keys = static_cast<size_t>(absl::GetFlag(FLAGS_max_keys));
  options.max_total_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_total_bytes));
  options.max_inflight_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_inflight_bytes));
  absl::StatusOr<std::string> token = mooncake::AuthTokenFromEnv();
  if (!token.ok()) {
    MC_LOG(ERROR) << token.status().message();
    return 2;
  }
  options.auth_token = *token;  // PUT and DELETE then need it (x-mooncake-auth)
  mooncake::metadata::HttpMetadataServer server(options);
  absl::Status started = server.Start();
  if (!started.ok()) {
    MC_LOG(ERROR) << started.message();
    return 1;
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  MC_LOG(INFO) << "received " << (signal_number == SIGINT ? "SIGINT" : "SIGTERM")
               << ", shutting down";
  server.Stop();
  return 0;
}
