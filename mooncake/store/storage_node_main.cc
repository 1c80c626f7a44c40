// mooncake_storage_node: a process that only contributes memory to the pool (a store client with a
// segment and no workload), like Mooncake's store service. Runs until SIGINT/SIGTERM.
//
//   mooncake_storage_node --master=127.0.0.1:50051 --segment_size=4gb
//       --metadata=http://127.0.0.1:8080/metadata --host=127.0.0.1
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/mutex_mode.h"
#include "mooncake/store/storage_process.h"
#include "mooncake/store/store_client.h"

ABSL_FLAG(std::string, master, "127.0.0.1:50051", "mooncake_master address (host:port)");
ABSL_FLAG(std::string, metadata, "P2PHANDSHAKE", "metadata server connection string");
ABSL_FLAG(std::string, host, "127.0.0.1", "host (or host:port) this node serves and advertises");
ABSL_FLAG(std::string, segment_size, "1gb", "memory contributed to the pool");
ABSL_FLAG(std::string, protocol, "tcp", "tcp or rdma");
ABSL_FLAG(std::string, device, "", "RDMA devices, e.g. erdma_0,erdma_1");
ABSL_FLAG(std::string, ssd_offload_path, "",
          "SSD tier directory (docs/ssd_tier.md; default MOONCAKE_OFFLOAD_FILE_STORAGE_PATH when "
          "MOONCAKE_ENABLE_SSD_OFFLOAD is true): completed objects are copied there, stay "
          "readable after eviction, and come back after a restart. Needs a master run with "
          "--enable_offload. Tunables: MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES and friends.");
ABSL_FLAG(int, connect_timeout, 30,
          "seconds to keep retrying while the master cannot be reached at start (start order of "
          "master and nodes does not matter); 0 tries once");

namespace {
volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  mooncake::UseProductionMutexMode();
  absl::SetProgramUsageMessage("Contributes a memory segment to a mooncake store pool.");
  absl::ParseCommandLine(argc, argv);
  auto size = mooncake::ParseByteSize(absl::GetFlag(FLAGS_segment_size));
  if (!size.ok() || *size == 0) {
    fprintf(stderr, "mooncake_storage_node: --segment_size: %s\n",
            size.ok() ? "must be positive" : std::string(size.status().message()).c_str());
    return 2;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  mooncake::StorageProcessConfig config;
  config.master_server_address = absl::GetFlag(FLAGS_master);
  config.metadata_server = absl::GetFlag(FLAGS_metadata);
  config.local_hostname = absl::GetFlag(FLAGS_host);
  config.segment_size = *size;
  config.protocol = absl::GetFlag(FLAGS_protocol);
  config.devices = absl::GetFlag(FLAGS_device);
  config.ssd_offload_path = absl::GetFlag(FLAGS_ssd_offload_path);
  mooncake::StorageProcessError error;
  auto store =
      mooncake::StartStorageProcess(config, absl::Seconds(absl::GetFlag(FLAGS_connect_timeout)),
                                    &g_stop, "mooncake_storage_node", &error);
  if (!store.ok()) {
    fprintf(stderr, "mooncake_storage_node: %s\n", store.status().ToString().c_str());
    return error.config ? 2 : 1;
  }
  if (mooncake::DiskTier* tier = (*store)->disk_tier()) {
    const mooncake::DiskStoreStats st = tier->GetStats().store;
    printf("SSD tier %s: %llu objects recovered, %llu torn records dropped\n",
           tier->store()->options().dir.c_str(),
           static_cast<unsigned long long>(st.recovered_objects),
           static_cast<unsigned long long>(st.torn_records));
  }
  printf("READY %s %s\n", (*store)->hostname().c_str(), mooncake::FormatByteSize(*size).c_str());
  fflush(stdout);
  while (!g_stop) usleep(100 * 1000);
  (*store)->Close().IgnoreError();
  return 0;
}
