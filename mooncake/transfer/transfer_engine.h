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
// Routes (transport.h), chosen per request, fastest first: the same engine (memcpy); another
// process on the same host whose buffer is memfd-backed (shared memory, one memcpy); RDMA when both
// sides run it; TCP otherwise (persistent pooled connections). Every address is checked: the local
// one against this engine's registrations, the remote one against the segment's descriptor (a range
// may span the buffers of adjacent MR chunks) and again by the owner. A failure never writes
// outside the named range, and never affects other peers.
//
// The engine reaches the outside world only through TransferEngineSeams: production leaves them
// empty (real clock, threads, sockets, libibverbs); the simulator supplies its own and drives the
// engine's progress (Poll, Maintain) as simulated events. The segment table (segment_table.cc)
// never holds a lock across network I/O: a peer that does not answer costs one connect timeout
// per segment and refresh, not per request, and never delays other peers or the RDMA poller.
#ifndef MOONCAKE_TRANSFER_TRANSFER_ENGINE_H_
#define MOONCAKE_TRANSFER_TRANSFER_ENGINE_H_

#include <atomic>
#include <functional>
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
#include "mooncake/common/clock.h"
#include "mooncake/common/executor.h"
#include "mooncake/transfer/memory_registry.h"
#include "mooncake/transfer/peer_control.h"
#include "mooncake/transfer/rdma/rdma_transport.h"
#include "mooncake/transfer/segment_descriptor.h"
#include "mooncake/transfer/tcp/tcp_frame.h"
#include "mooncake/transfer/transfer_batch.h"
#include "mooncake/transfer/transfer_types.h"
#include "mooncake/transfer/transport.h"

namespace mooncake {

namespace metadata {
class MetadataClient;
}
class TcpDataServer;
class TcpPeer;
class ShmExporter;
class ShmRoute;
class TcpRoute;
enum class FrameOp : uint8_t;
struct FrameHeader;

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
  // RDMA: devices to stripe over (MOONCAKE_DEVICE) and tuning (MC_GID_INDEX, MC_IB_PORT, MC_MTU
  // set rdma.gid_index, rdma.port and rdma.path_mtu).
  std::vector<std::string> rdma_devices;
  RdmaOptions rdma;
  // Routes that may be used; benchmarks turn the faster ones off to measure TCP.
  bool allow_local_memcpy = true;
  bool allow_shm = true;  // MC_DISABLE_SHM=1 turns it off
  bool allow_tcp = true;
  // Serve the TCP data and control port (peers' TCP route, P2P handshakes, RDMA rail handshakes
  // over TCP). Off only in the simulator, whose control channel is a seam.
  bool serve_tcp = true;
  int tcp_lanes = 2;  // MC_TCP_LANES
  // Threads (the caller included) that copy large same-process / shared-memory batches.
  int copy_threads = DefaultCopyThreads();              // MC_COPY_THREADS
  uint64_t tcp_slice_size = 1 << 20;                    // MC_TCP_SLICE_SIZE
  absl::Duration transfer_timeout = absl::Seconds(30);  // MC_TRANSFER_TIMEOUT (seconds)
  absl::Duration connect_timeout = absl::Seconds(3);
  // After a peer could not be reached (descriptor fetch or connect), requests to it fail at once
  // for this long instead of each paying a connect timeout.
  absl::Duration reconnect_backoff = absl::Milliseconds(500);
  // A segment unused this long is forgotten: its connections and QPs are closed, its SegmentId
  // becomes unknown (OpenSegment by name again returns a fresh one).
  absl::Duration segment_idle_timeout = absl::Minutes(5);
  // How often the engine checks that the peers holding RDMA endpoints to it are still alive.
  absl::Duration accepted_probe_interval = absl::Seconds(30);
  // The shared secret (MC_AUTH_TOKEN) this engine's servers require and its clients present: on
  // the TCP data port, the shm handshake and metadata server writes (common/auth_token.h).
  std::string auth_token;

  // ApplyEnv overrides fields from the MC_* variables named above; errors name the variable.
  absl::Status ApplyEnv();
};

// TransferEngineSeams is the engine's outside world (docs/architecture.md, "Layers and seams").
// Production leaves every field empty; the simulator fills them in.
struct TransferEngineSeams {
  Clock* clock = nullptr;  // nullptr: RealClock
  Verbs* verbs = nullptr;  // nullptr: libibverbs
  // The metadata service; nullptr: the one options.metadata_server names (none for P2PHANDSHAKE).
  std::shared_ptr<metadata::MetadataClient> metadata;
  // The control channel to peers; nullptr: control frames over TCP.
  PeerControl* control = nullptr;
  // When `wake` is set the engine runs no thread of its own: background work (RDMA rail
  // handshakes, liveness probes) goes to `executor`, `wake` is called whenever RDMA work is
  // queued, and the owner calls Poll() until Idle(), and Maintain() periodically.
  Executor* executor = nullptr;
  std::function<void()> wake;
  std::string host_id;    // "": LocalHostId()
  uint64_t instance = 0;  // 0: random
};

class TransferEngine {
 public:
  static absl::StatusOr<std::unique_ptr<TransferEngine>> Create(TransferEngineOptions options,
                                                                TransferEngineSeams seams = {});
  ~TransferEngine();
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // segment_name is "host:port", what peers pass to OpenSegment.
  const std::string& segment_name() const { return segment_name_; }
  int rpc_port() const { return rpc_port_; }
  // instance is random per engine (never 0) and published in the descriptor: a process restarted
  // under the same segment name has another one.
  uint64_t instance() const { return instance_.load(); }
  const std::string& host_id() const { return host_id_; }

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
  // RouteTo reports how requests to a segment travel (its fastest route).
  absl::StatusOr<RouteKind> RouteTo(SegmentId id);
  // SameHost is true for this engine's own segment and segments of engines on this host.
  bool SameHost(const std::string& segment);

  // Submit starts every request; per-request errors are reported through the batch, never thrown.
  // `on_done` (optional) runs exactly once, when every request has finished, on the thread that
  // finished the last one (possibly before Submit returns).
  std::shared_ptr<TransferBatch> Submit(const std::vector<TransferRequest>& requests,
                                        TransferBatch::Callback on_done = nullptr);
  // Transfer submits and waits, at most transfer_timeout plus a margin (every transport bounds
  // its requests by transfer_timeout); returns per-request status.
  std::vector<absl::Status> Transfer(const std::vector<TransferRequest>& requests);

  // Progress, for an engine whose seams set `wake` (the simulator). Poll returns how much work it
  // did (0 = none); Idle is true when no RDMA slice is queued or in flight. Maintain forgets idle
  // segments and probes the peers of accepted RDMA endpoints.
  int Poll();
  bool Idle() const;
  void Maintain();

  // ServiceHandler answers requests peers send with CallService (the store's SSD tier serves disk
  // reads this way), streaming the reply (ControlReplyStream: Begin once, then Write). It runs on
  // the control connection's thread; it may run concurrently.
  using ServiceHandler =
      std::function<absl::Status(const std::string& request, ControlReplyStream& reply)>;
  // SetServiceHandler installs (or, with null, removes) the handler; without one, requests get
  // NOT_SUPPORTED.
  void SetServiceHandler(ServiceHandler handler);
  // CallService sends `request` to the service handler of the engine serving `segment` and returns
  // its reply (at most FrameHeader::kMaxControlPayload bytes), or its error.
  absl::StatusOr<std::string> CallService(const std::string& segment, const std::string& request);
  // CallServiceInto streams the reply to `consume` (PeerControl::CallServiceInto).
  absl::Status CallServiceInto(const std::string& segment, const std::string& request,
                               const PeerControl::ReplyConsumer& consume);

  // What this engine answers on its control channel (PeerControl's other end).
  std::string DescriptorJson() const;
  // HandleService runs the handler with the reply gathered in a string (the simulator's control
  // channel); HandleServiceStream with the reply sent as it comes (the TCP server's).
  absl::StatusOr<std::string> HandleService(const std::string& request);
  absl::Status HandleServiceStream(const std::string& request, ControlReplyStream& reply);
  absl::StatusOr<EndpointInfo> AcceptRdma(const EndpointInfo& remote);

  // FenceInbound makes sure no byte of a write that reached this engine before the call lands in
  // its memory afterwards (a store remounting its segment calls it: the space is handed out
  // afresh). TCP connections open now are closed; RDMA endpoints peers connected are destroyed;
  // and the engine takes a new instance (published at once), so a request described for the old
  // one, retried over a new connection, is refused with INVALID_REPLICA. Writes already applied
  // stay. Returns the new instance.
  uint64_t FenceInbound();

  struct Stats {
    size_t segments = 0;       // open segment entries
    size_t rdma_peers = 0;     // peers with RDMA rails from this engine
    size_t rdma_accepted = 0;  // peers' rails accepted by this engine
  };
  Stats GetStats() const;
  // SetTcpFaultHookForTesting stalls or observes WRITE frames this engine's TCP data server
  // receives (tests only; see TcpDataServer::FaultHook).
  void SetTcpFaultHookForTesting(std::function<void(const FrameHeader&)> hook);
  // rdma_transport is null unless protocol is "rdma" (tests and benchmarks read its stats).
  RdmaTransport* rdma_transport() const { return rdma_.get(); }

  const TransferEngineOptions& options() const { return options_; }

 private:
  struct Segment;
  struct SegmentView;
  class TcpControl;
  TransferEngine(TransferEngineOptions options, TransferEngineSeams seams);
  absl::Status Init();
  absl::Status Publish();
  absl::StatusOr<SegmentDescriptor> FetchDescriptor(const std::string& name);
  absl::StatusOr<std::string> HandleControl(FrameOp op, const std::string& payload);

  // --- Segment table (segment_table.cc) ---
  std::unique_ptr<PeerControl> NewTcpControl();
  std::shared_ptr<Segment> GetSegment(SegmentId id);
  // CurrentView is the view of an open segment, without resolving it (null if none).
  std::shared_ptr<const SegmentView> CurrentView(const std::string& name);
  // View returns the segment's current view, resolving it first if it was never resolved or is
  // marked stale.
  absl::StatusOr<std::shared_ptr<const SegmentView>> View(Segment* seg);
  // Refresh re-reads the peer's descriptor and rebuilds its routes, unless another thread did so
  // after `seen` was read (then that view is returned). One refresh per segment at a time; a
  // failed one is not retried before reconnect_backoff passed.
  absl::StatusOr<std::shared_ptr<const SegmentView>> Refresh(
      Segment* seg, const std::shared_ptr<const SegmentView>& seen);
  // BuildView makes the routes for a descriptor (may do I/O: connecting shared memory).
  std::shared_ptr<const SegmentView> BuildView(const std::string& name, SegmentDescriptor desc,
                                               const SegmentView* previous);
  void WatchdogLoop();
  // Publishes our descriptor again if the metadata server lost it (it restarted: it keeps its
  // state in memory only).
  void EnsurePublished();
  void CheckTcpTimeouts();
  void ProbeAcceptedPeers();
  void RdmaProgressLoop();
  // Schedule runs background work on the seams' or the engine's executor, never after the engine
  // is gone.
  void Schedule(std::function<void()> fn);

  TransferEngineOptions options_;
  TransferEngineSeams seams_;
  Clock* const clock_;
  std::string host_;
  std::string host_id_;
  std::string segment_name_;
  int rpc_port_ = 0;
  std::atomic<uint64_t> instance_;  // renewed by FenceInbound
  MemoryRegistry registry_;
  std::shared_ptr<metadata::MetadataClient> metadata_;
  absl::Mutex service_mu_;
  std::shared_ptr<const ServiceHandler> service_ ABSL_GUARDED_BY(service_mu_);
  std::unique_ptr<PeerControl> tcp_control_;
  PeerControl* control_ = nullptr;
  std::unique_ptr<TcpDataServer> tcp_server_;
  std::unique_ptr<Executor> copy_pool_;  // copy_threads - 1 helpers
  std::unique_ptr<CopyRunner> copier_;
  std::unique_ptr<Executor> own_executor_;  // background work when the seams give none
  Executor* executor_ = nullptr;
  std::unique_ptr<ShmExporter> shm_exporter_;
  std::unique_ptr<Verbs> owned_verbs_;
  std::unique_ptr<RdmaTransport> rdma_;
  std::thread rdma_progress_;
  // Background work checks this before touching the engine (the simulator's executor may run it
  // after the engine was destroyed).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  absl::Mutex shm_mu_;
  std::map<uint64_t, int> shm_fds_ ABSL_GUARDED_BY(shm_mu_);  // addr -> memfd of our shared buffers

  mutable absl::Mutex seg_mu_;
  std::map<SegmentId, std::shared_ptr<Segment>> segments_ ABSL_GUARDED_BY(seg_mu_);
  std::map<std::string, SegmentId> segment_ids_ ABSL_GUARDED_BY(seg_mu_);
  SegmentId next_segment_id_ ABSL_GUARDED_BY(seg_mu_) = 1;
  int64_t next_probe_ns_ ABSL_GUARDED_BY(seg_mu_) = 0;

  std::atomic<bool> stopping_{false};
  // Set (release) once Init has written every member the TCP server's control handler reads
  // (segment_name_, shm_exporter_, rdma_); the server listens before that, to learn its port.
  std::atomic<bool> control_ready_{false};
  std::thread watchdog_;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TRANSFER_ENGINE_H_
