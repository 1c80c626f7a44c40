// mooncake_client: the storage process of standalone mode (docs/standalone.md), with Mooncake's
// flags. It holds the segment (and the SSD tier) and does the store calls of every process on
// this host that set up with `setup_dummy(mem_pool_size, local_buffer_size, "127.0.0.1:<port>")`,
// so the L3 cache outlives those processes. Runs until SIGINT/SIGTERM.
//
//   mooncake_client --master_server_address=127.0.0.1:50051 --global_segment_size=16gb
//       --metadata_server=P2PHANDSHAKE --host=127.0.0.1 --port=50052
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/mutex_mode.h"
#include "mooncake/standalone/standalone_protocol.h"
#include "mooncake/standalone/standalone_server.h"
#include "mooncake/store/storage_process.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "host this process's transfer engine serves and advertises");
ABSL_FLAG(int, port, 50052,
          "the port clients name in setup_dummy's server address (\"127.0.0.1:<port>\"); served "
          "on the abstract unix socket @mooncake_client.<port> of this host");
ABSL_FLAG(std::string, master_server_address, "127.0.0.1:50051",
          "mooncake_master address (host:port, or etcd://... for HA)");
ABSL_FLAG(std::string, metadata_server, "P2PHANDSHAKE", "metadata server connection string");
ABSL_FLAG(std::string, protocol, "tcp", "tcp or rdma");
ABSL_FLAG(std::string, device_names, "", "RDMA devices, e.g. erdma_0,erdma_1");
ABSL_FLAG(std::string, global_segment_size, "4gb", "memory this process contributes to the pool");
ABSL_FLAG(std::string, ssd_offload_path, "",
          "SSD tier directory (docs/ssd_tier.md); needs a master run with --enable_offload");
ABSL_FLAG(int, connect_timeout, 30,
          "seconds to keep retrying while the master cannot be reached at start; 0 tries once");
ABSL_FLAG(int, max_clients, 256, "connections served at once (each client process uses a few)");

namespace {
volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  mooncake::UseProductionMutexMode();
  absl::SetProgramUsageMessage(
      "Holds a segment of the mooncake store pool and serves the store calls of the processes on "
      "this host that use setup_dummy (standalone mode).");
  absl::ParseCommandLine(argc, argv);
  auto size = mooncake::ParseByteSize(absl::GetFlag(FLAGS_global_segment_size));
  if (!size.ok() || *size == 0) {
    fprintf(stderr, "mooncake_client: --global_segment_size: %s\n",
            size.ok() ? "must be positive" : std::string(size.status().message()).c_str());
    return 2;
  }
  const int port = absl::GetFlag(FLAGS_port);
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "mooncake_client: --port=%d: must be 1..65535\n", port);
    return 2;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  mooncake::StorageProcessConfig config;
  config.master_server_address = absl::GetFlag(FLAGS_master_server_address);
  config.metadata_server = absl::GetFlag(FLAGS_metadata_server);
  config.local_hostname = absl::GetFlag(FLAGS_host);
  config.segment_size = *size;
  config.protocol = absl::GetFlag(FLAGS_protocol);
  config.devices = absl::GetFlag(FLAGS_device_names);
  config.ssd_offload_path = absl::GetFlag(FLAGS_ssd_offload_path);
  mooncake::StorageProcessError error;
  auto store =
      mooncake::StartStorageProcess(config, absl::Seconds(absl::GetFlag(FLAGS_connect_timeout)),
                                    &g_stop, "mooncake_client", &error);
  if (!store.ok()) {
    fprintf(stderr, "mooncake_client: %s\n", store.status().ToString().c_str());
    return error.config ? 2 : 1;
  }
  mooncake::StandaloneServer server(store->get(), absl::GetFlag(FLAGS_max_clients));
  const std::string socket = mooncake::StandaloneSocketNameForPort(port);
  if (absl::Status s = server.Start(socket); !s.ok()) {
    fprintf(stderr, "mooncake_client: port %d: %s (is another mooncake_client running?)\n", port,
            std::string(s.message()).c_str());
    (*store)->Close().IgnoreError();
    return 1;
  }
  printf("READY %s %s standalone @%s\n", (*store)->hostname().c_str(),
         mooncake::FormatByteSize(*size).c_str(), socket.c_str());
  fflush(stdout);
  while (!g_stop) usleep(100 * 1000);
  server.Stop();
  (*store)->Close().IgnoreError();
  return 0;
}
