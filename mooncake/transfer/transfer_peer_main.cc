// transfer_peer: a process that owns one segment, for multi-process tests and benchmarks.
// Prints "READY <segment_name> <buffer_addr> <buffer_size>" once serving; exits when stdin closes.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/mutex_mode.h"
#include "mooncake/transfer/transfer_engine.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "host (or host:port) to serve and advertise");
ABSL_FLAG(std::string, metadata, "P2PHANDSHAKE", "metadata connection string");
ABSL_FLAG(std::string, size, "64mb", "segment size");
ABSL_FLAG(bool, shm, true, "back the segment with shared memory (memfd)");
ABSL_FLAG(int, fill, -1, "fill the segment with byte (i * 131 + fill) & 0xff; -1 = leave zero");
ABSL_FLAG(std::string, protocol, "tcp", "tcp or rdma");
ABSL_FLAG(std::string, devices, "", "RDMA devices, e.g. erdma_0,erdma_1");

int main(int argc, char** argv) {
  mooncake::UseProductionMutexMode();
  absl::ParseCommandLine(argc, argv);
  auto size = mooncake::ParseByteSize(absl::GetFlag(FLAGS_size));
  if (!size.ok()) {
    fprintf(stderr, "%s\n", size.status().ToString().c_str());
    return 2;
  }
  mooncake::TransferEngineOptions opts;
  opts.local_server_name = absl::GetFlag(FLAGS_host);
  opts.metadata_server = absl::GetFlag(FLAGS_metadata);
  opts.protocol = absl::GetFlag(FLAGS_protocol);
  opts.rdma_devices = absl::StrSplit(absl::GetFlag(FLAGS_devices), ',', absl::SkipEmpty());
  if (absl::Status s = opts.ApplyEnv(); !s.ok()) {
    fprintf(stderr, "%s\n", s.ToString().c_str());
    return 2;
  }
  auto engine = mooncake::TransferEngine::Create(opts);
  if (!engine.ok()) {
    fprintf(stderr, "transfer_peer: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  char* buf = nullptr;
  std::vector<char> heap;
  if (absl::GetFlag(FLAGS_shm)) {
    auto mem = (*engine)->AllocateSharedMemory(*size);
    if (!mem.ok()) {
      fprintf(stderr, "transfer_peer: %s\n", mem.status().ToString().c_str());
      return 1;
    }
    buf = static_cast<char*>(*mem);
  } else {
    heap.resize(*size);
    buf = heap.data();
    if (absl::Status s = (*engine)->RegisterLocalMemory(buf, *size); !s.ok()) {
      fprintf(stderr, "transfer_peer: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  int fill = absl::GetFlag(FLAGS_fill);
  if (fill >= 0) {
    for (uint64_t i = 0; i < *size; ++i) buf[i] = static_cast<char>((i * 131 + fill) & 0xff);
  }
  printf("READY %s %llu %llu\n", (*engine)->segment_name().c_str(),
         static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(buf)),
         static_cast<unsigned long long>(*size));
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}
