// TransferEngine: moves bytes between local registered memory and addresses in remote segments,
// one-sided, in batches. A segment is the memory one engine registered, named "host:port".
//
//   TransferEngineOptions opts;
//   opts.local_server_name = "127.0.0.1";              // port chosen automatically
//   opts.metadata_server = "http://127.0.0.1:8080/metadata";  // or "P2PHANDSHAKE", "etcd://..."
//   auto engine = TransferEngine::Create(opts);
//   (*engine)->RegisterLocalMemory(buf, len);
//   SegmentId seg = *(*engine)->OpenSegment("10.0.0.2:15001");
//   auto batch = (*engine)->Submit({{TransferRequest::Opcode::kWrite, buf, seg, remote, len}});
//   batch->Wait();  batch->status(0);
//
// Routes, chosen per segment, fastest first: the same engine (memcpy); another process on the same
// host whose buffer is memfd-backed (shared memory, one memcpy); anything else over TCP (persistent
// pooled connections). Every address is checked: the local one against this engine's registrations,
// the remote one against the segment's descriptor and again by the owner. A failure never writes
// outside the named range, and never affects other peers.
#ifndef MOONCAKE_TRANSFER_TRANSFER_ENGINE_H_
#define MOONCAKE_TRANSFER_TRANSFER_ENGINE_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/common/executor.h"
#include "mooncake/transfer/memory_registry.h"
#include "mooncake/transfer/rdma/rdma_transport.h"
#include "mooncake/transfer/segment_descriptor.h"
#include "mooncake/transfer/transfer_batch.h"
#include "mooncake/transfer/transfer_types.h"

namespace mooncake {

namespace metadata {
class MetadataClient;
}
class TcpDataServer;
class TcpPeer;
class ShmExporter;
class ShmPeer;
enum class FrameOp : uint8_t;

// DefaultCopyThreads is the machine's core count, capped at 4.
int DefaultCopyThreads();

struct TransferEngineOptions {
  // "host" or "host:port". The engine listens on this host (and port; 0 or none = ephemeral) and
  // advertises exactly this host. The segment name is always "host:port".
  std::string local_server_name = "127.0.0.1";
  // Address to bind; empty = the host of local_server_name.
  std::string bind_address;
  // "P2PHANDSHAKE", "http://host:port/metadata", "etcd://host:port".
  std::string metadata_server = "P2PHANDSHAKE";
  std::string protocol = "tcp";  // "tcp" or "rdma"
  // RDMA: devices to stripe over (MOONCAKE_DEVICE), tuning, and the Verbs to use (nullptr = the
  // real libibverbs; tests inject another). The engine runs RDMA progress on its own thread.
  std::vector<std::string> rdma_devices;
  RdmaOptions rdma;
  Verbs* verbs = nullptr;
  // Routes that may be used; benchmarks turn the faster ones off to measure TCP.
  bool allow_local_memcpy = true;
  bool allow_shm = true;  // MC_DISABLE_SHM=1 turns it off
  int tcp_lanes = 2;      // MC_TCP_LANES
  // Threads (the caller included) that copy large same-process / shared-memory batches.
  int copy_threads = DefaultCopyThreads();              // MC_COPY_THREADS
  uint64_t tcp_slice_size = 1 << 20;                    // MC_TCP_SLICE_SIZE
  absl::Duration transfer_timeout = absl::Seconds(30);  // MC_TRANSFER_TIMEOUT (seconds)
  absl::Duration connect_timeout = absl::Seconds(3);

  // ApplyEnv overrides fields from the MC_* variables named above; errors name the variable.
  absl::Status ApplyEnv();
};

class TransferEngine {
 public:
  enum class Route { kLocal, kShm, kTcp, kRdma };

  static absl::StatusOr<std::unique_ptr<TransferEngine>> Create(TransferEngineOptions options);
  ~TransferEngine();
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // segment_name is "host:port", what peers pass to OpenSegment.
  const std::string& segment_name() const { return segment_name_; }
  int rpc_port() const { return rpc_port_; }
  // instance is random per engine (never 0) and published in the descriptor: a process restarted
  // under the same segment name has another one.
  uint64_t instance() const { return instance_; }

  // RegisterLocalMemory records [addr, addr + length) for transfers; it does not touch the pages.
  absl::Status RegisterLocalMemory(void* addr, uint64_t length,
                                   const std::string& location = "cpu:0",
                                   bool remote_accessible = true);
  absl::Status UnregisterLocalMemory(void* addr);

  // AllocateSharedMemory returns registered, memfd-backed memory that same-host peers can map (the
  // store's segment uses it); `populate` allocates every page now. FreeSharedMemory unregisters and
  // frees it.
  absl::StatusOr<void*> AllocateSharedMemory(uint64_t length, bool populate = false);
  absl::Status FreeSharedMemory(void* addr);

  // OpenSegment resolves a segment by name (through the metadata service, or directly from the peer
  // in P2PHANDSHAKE mode). Opening the same name again returns the same id.
  absl::StatusOr<SegmentId> OpenSegment(const std::string& name);
  absl::Status CloseSegment(SegmentId id);
  // RouteTo reports how requests to a segment travel.
  absl::StatusOr<Route> RouteTo(SegmentId id);

  // Submit starts every request; per-request errors are reported through the batch, never thrown.
  std::shared_ptr<TransferBatch> Submit(const std::vector<TransferRequest>& requests);
  // Transfer submits and waits (up to transfer_timeout plus a margin); returns per-request status.
  std::vector<absl::Status> Transfer(const std::vector<TransferRequest>& requests);

  const TransferEngineOptions& options() const { return options_; }

 private:
  struct Segment;
  explicit TransferEngine(TransferEngineOptions options);
  absl::Status Init();
  std::string DescriptorJson() const;
  absl::Status Publish();
  absl::StatusOr<SegmentDescriptor> FetchDescriptor(const std::string& name);
  // Copies gathered by Submit for the same-process and shared-memory routes.
  struct PendingCopy {
    size_t request;
    char* dst;
    const char* src;
    uint64_t length;
    bool check_remote;  // same-process: the remote range is ours and must still be registered
  };
  struct CopyChunk {
    char* dst;
    const char* src;
    uint64_t length;
  };
  static constexpr uint64_t kCopyChunk = 1 << 20;
  static constexpr uint64_t kParallelCopyThreshold = 1 << 20;
  static_assert(kParallelCopyThreshold >= kCopyChunk, "parallel copies need several chunks");
  void RunCopies(const std::vector<TransferRequest>& requests, std::vector<PendingCopy>* copies,
                 TransferBatch* batch);
  void ParallelCopy(const std::vector<CopyChunk>& chunks);

  // SetupRoutes (re)builds the TCP and shared-memory routes from seg->desc; requires seg->mu.
  void SetupRoutes(Segment* seg);
  std::shared_ptr<Segment> GetSegment(SegmentId id);
  void WatchdogLoop();
  void RdmaProgressLoop();
  absl::StatusOr<std::string> HandleControl(FrameOp op, const std::string& payload);
  class Handshake;

  TransferEngineOptions options_;
  std::string host_;
  std::string segment_name_;
  int rpc_port_ = 0;
  const uint64_t instance_;
  MemoryRegistry registry_;
  std::unique_ptr<metadata::MetadataClient> metadata_;
  std::unique_ptr<TcpDataServer> tcp_server_;
  std::unique_ptr<Executor> copy_pool_;  // copy_threads - 1 helpers
  std::unique_ptr<ShmExporter> shm_exporter_;
  std::unique_ptr<Verbs> owned_verbs_;
  std::unique_ptr<Handshake> handshake_;
  std::unique_ptr<RdmaTransport> rdma_;
  std::thread rdma_progress_;

  absl::Mutex shm_mu_;
  std::map<uint64_t, int> shm_fds_ ABSL_GUARDED_BY(shm_mu_);  // addr -> memfd of our shared buffers

  absl::Mutex seg_mu_;
  std::map<SegmentId, std::shared_ptr<Segment>> segments_ ABSL_GUARDED_BY(seg_mu_);
  std::map<std::string, SegmentId> segment_ids_ ABSL_GUARDED_BY(seg_mu_);
  SegmentId next_segment_id_ ABSL_GUARDED_BY(seg_mu_) = 1;

  std::atomic<bool> stopping_{false};
  std::thread watchdog_;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TRANSFER_ENGINE_H_
