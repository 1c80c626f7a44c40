// mooncake_master: the master of the KV-cache store. Flags: master_flags.h (or --help).
// Prints "mooncake_master: serving gRPC on <addr>:<port> ..." once every listener is bound; exits
// 0 on SIGINT/SIGTERM, 1 if it cannot start, 2 on bad flags.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"
#include "mooncake/common/mutex_mode.h"
#include "mooncake/master/master_flags.h"
#include "mooncake/master/master_server.h"
#include "mooncake/net/host_port.h"

int main(int argc, char** argv) {
  mooncake::UseProductionMutexMode();
  absl::SetProgramUsageMessage(
      "The master of a Mooncake-compatible KV-cache store: object metadata, allocation, read "
      "leases, eviction and client liveness over gRPC.\n\n  mooncake_master [--port=50051] "
      "[--bind_address=0.0.0.0] [--metrics_port=9003] [--enable_http_metadata_server] ...");
  mooncake::SetMasterFlagsUsageConfig();
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr, "mooncake_master: unexpected argument '%s' (flags look like --port=N)\n",
                 args[1]);
    return 2;
  }
  auto options = mooncake::MasterServerOptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "mooncake_master: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }

  // Signals are taken synchronously by this thread; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = mooncake::MasterServer::Start(*options);
  if (!server.ok()) {
    std::fprintf(stderr, "mooncake_master: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::string banner = absl::StrCat(
      "mooncake_master: serving gRPC on ",
      mooncake::FormatHostPort(options->bind_address, (*server)->port()), ", metrics on http://",
      mooncake::FormatHostPort(options->bind_address, (*server)->metrics_port()), "/metrics");
  if (options->enable_http_metadata_server) {
    const std::string host = options->http_metadata_server_host.empty()
                                 ? options->bind_address
                                 : options->http_metadata_server_host;
    absl::StrAppend(&banner, ", metadata on http://",
                    mooncake::FormatHostPort(host, (*server)->metadata_port()), "/metadata");
  }
  std::printf("%s\n", banner.c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&signals, &signal);
  MC_LOG(INFO) << "mooncake_master: signal " << signal << ", shutting down";
  (*server)->Stop();
  return 0;
}
