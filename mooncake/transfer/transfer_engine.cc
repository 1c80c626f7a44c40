#include "mooncake/transfer/transfer_engine.h"

#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/metadata/metadata_client.h"
#include "mooncake/net/host_port.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/transfer/host_id.h"
#include "mooncake/transfer/rdma/ib_verbs.h"
#include "mooncake/transfer/shm/shared_memory.h"
#include "mooncake/transfer/tcp/tcp_control.h"
#include "mooncake/transfer/tcp/tcp_data_server.h"
#include "mooncake/transfer/tcp/tcp_frame.h"
#include "mooncake/transfer/tcp/tcp_transport.h"

namespace mooncake {

constexpr char kP2PHandshake[] = "P2PHANDSHAKE";

struct TransferEngine::Segment {
  explicit Segment(std::string n) : name(std::move(n)) {}
  const std::string name;
  absl::Mutex mu;
  bool resolved ABSL_GUARDED_BY(mu) = false;
  bool stale ABSL_GUARDED_BY(mu) = false;
  SegmentDescriptor desc ABSL_GUARDED_BY(mu);
  std::shared_ptr<const SegmentDescriptor> shared_desc ABSL_GUARDED_BY(mu);  // for RDMA slices
  bool use_rdma ABSL_GUARDED_BY(mu) = false;  // non-shared buffers go over RDMA, not TCP
  // The owner's shm generation that `desc` is at least as new as (see shm/shared_memory.h).
  uint64_t shm_generation ABSL_GUARDED_BY(mu) = 0;
  Route route ABSL_GUARDED_BY(mu) = Route::kTcp;
  std::shared_ptr<ShmPeer> shm ABSL_GUARDED_BY(mu);
  std::shared_ptr<TcpPeer> tcp ABSL_GUARDED_BY(mu);
};

int DefaultCopyThreads() {
  unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::max(1u, std::min(cores, 4u)));
}

// Carries RDMA rail handshakes to peers over their TCP control port.
class TransferEngine::Handshake final : public RdmaHandshake {
 public:
  explicit Handshake(TransferEngine* engine) : engine_(engine) {}
  absl::StatusOr<EndpointInfo> Exchange(const std::string& peer_segment,
                                        const EndpointInfo& mine) override {
    std::string host;
    int port = 0;
    {
      absl::MutexLock lock(&engine_->seg_mu_);
      auto id = engine_->segment_ids_.find(peer_segment);
      if (id == engine_->segment_ids_.end()) {
        return MakeError(ErrorCode::SEGMENT_NOT_FOUND, peer_segment);
      }
      std::shared_ptr<Segment> seg = engine_->segments_[id->second];
      absl::MutexLock seg_lock(&seg->mu);
      host = seg->desc.tcp_host;
      port = seg->desc.tcp_port;
    }
    absl::StatusOr<std::string> reply =
        ControlCall(host, port, FrameOp::kRdmaHandshake, EndpointInfoToJson(mine),
                    engine_->options_.connect_timeout);
    if (!reply.ok()) return reply.status();
    return ParseEndpointInfo(*reply);
  }

 private:
  TransferEngine* const engine_;
};

absl::StatusOr<std::string> TransferEngine::HandleControl(FrameOp op, const std::string& payload) {
  if (op == FrameOp::kGetDescriptor) return DescriptorJson();
  if (op == FrameOp::kRdmaHandshake) {
    if (rdma_ == nullptr) {
      return MakeError(ErrorCode::NOT_SUPPORTED, "this engine does not run the RDMA transport");
    }
    absl::StatusOr<EndpointInfo> theirs = ParseEndpointInfo(payload);
    if (!theirs.ok()) return MakeError(ErrorCode::INVALID_PARAMS, theirs.status().message());
    absl::StatusOr<EndpointInfo> mine = rdma_->Accept(*theirs);
    if (!mine.ok()) return mine.status();
    return EndpointInfoToJson(*mine);
  }
  return MakeError(ErrorCode::NOT_SUPPORTED, "unknown control request");
}

absl::Status TransferEngineOptions::ApplyEnv() {
  auto env = [](const char* name) -> const char* { return std::getenv(name); };
  if (const char* v = env("MC_TCP_LANES")) {
    if (!absl::SimpleAtoi(v, &tcp_lanes) || tcp_lanes < 1 || tcp_lanes > 64) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("MC_TCP_LANES=\"", v, "\": expected 1..64"));
    }
  }
  if (const char* v = env("MC_TCP_SLICE_SIZE")) {
    absl::StatusOr<uint64_t> size = ParseByteSize(v);
    if (!size.ok() || *size < 4096 || *size > FrameHeader::kMaxPayload) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("MC_TCP_SLICE_SIZE=\"", v, "\": expected 4kb..256mb"));
    }
    tcp_slice_size = *size;
  }
  if (const char* v = env("MC_TRANSFER_TIMEOUT")) {
    double seconds = 0;
    if (!absl::SimpleAtod(v, &seconds) || seconds <= 0) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("MC_TRANSFER_TIMEOUT=\"", v, "\": expected seconds > 0"));
    }
    transfer_timeout = absl::Seconds(seconds);
  }
  if (const char* v = env("MC_COPY_THREADS")) {
    if (!absl::SimpleAtoi(v, &copy_threads) || copy_threads < 1 || copy_threads > 64) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("MC_COPY_THREADS=\"", v, "\": expected 1..64"));
    }
  }
  if (const char* v = env("MC_DISABLE_SHM")) {
    std::string s = absl::AsciiStrToLower(v);
    if (s == "1" || s == "true" || s == "yes") allow_shm = false;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TransferEngine>> TransferEngine::Create(
    TransferEngineOptions options) {
  if (options.protocol != "tcp" && options.protocol != "rdma") {
    return MakeError(ErrorCode::NOT_SUPPORTED,
                     absl::StrCat("protocol \"", options.protocol,
                                  "\" is not supported; use \"tcp\" or \"rdma\""));
  }
  if (options.tcp_lanes < 1 || options.tcp_slice_size == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS, "tcp_lanes and tcp_slice_size must be positive");
  }
  std::unique_ptr<TransferEngine> engine(new TransferEngine(std::move(options)));
  absl::Status s = engine->Init();
  if (!s.ok()) return s;
  return engine;
}

namespace {
uint64_t NewInstance() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return v == 0 ? 1 : v;
}

absl::Status WrongIncarnation(const std::string& segment) {
  return MakeError(ErrorCode::INVALID_REPLICA,
                   absl::StrCat("segment ", segment,
                                " restarted since the replica was placed; its bytes are gone"));
}
}  // namespace

TransferEngine::TransferEngine(TransferEngineOptions options)
    : options_(std::move(options)), instance_(NewInstance()) {}

absl::Status TransferEngine::Init() {
  // "host" or "host:port" (a bare IPv6 address has no port).
  int port = 0;
  host_ = options_.local_server_name;
  const size_t colon = host_.rfind(':');
  if (colon != std::string::npos && (host_.find(':') == colon || host_.front() == '[')) {
    absl::StatusOr<HostPort> hp = ParseHostPort(host_);
    if (!hp.ok()) return MakeError(ErrorCode::INVALID_PARAMS, hp.status().message());
    host_ = hp->host;
    port = hp->port;
  }
  if (host_.empty()) return MakeError(ErrorCode::INVALID_PARAMS, "local_server_name has no host");
  std::string bind = options_.bind_address.empty() ? host_ : options_.bind_address;

  tcp_server_ = std::make_unique<TcpDataServer>(
      &registry_,
      [this](FrameOp op, const std::string& payload) { return HandleControl(op, payload); });
  absl::Status s = tcp_server_->Start(bind, port);
  if (!s.ok()) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("transfer engine cannot listen on ",
                                                             bind, ":", port, ": ", s.message()));
  }
  rpc_port_ = tcp_server_->port();
  segment_name_ = absl::StrCat(host_, ":", rpc_port_);

  if (options_.protocol == "rdma") {
    Verbs* verbs = options_.verbs;
    if (verbs == nullptr) {
      owned_verbs_ = std::make_unique<IbVerbs>();
      verbs = owned_verbs_.get();
    }
    RdmaOptions rdma = options_.rdma;
    rdma.instance = instance_;
    if (!options_.rdma_devices.empty()) rdma.devices = options_.rdma_devices;
    handshake_ = std::make_unique<Handshake>(this);
    rdma_ = std::make_unique<RdmaTransport>(verbs, RealClock::Get(), handshake_.get(),
                                            segment_name_, rdma);
    if (absl::Status r = rdma_->Init(); !r.ok()) {
      return MakeError(ToErrorCode(r),
                       absl::StrCat("cannot start the RDMA transport: ", r.message()));
    }
    rdma_progress_ = std::thread([this] { RdmaProgressLoop(); });
  }

  if (options_.allow_shm) {
    shm_exporter_ = std::make_unique<ShmExporter>(&registry_);
    std::string name = absl::StrFormat("mooncake-shm-%d-%d-%x", getpid(), rpc_port_,
                                       reinterpret_cast<uintptr_t>(this));
    if (absl::Status e = shm_exporter_->Start(name); !e.ok()) {
      MC_LOG(WARNING) << "shared-memory transport disabled: " << e;
      shm_exporter_.reset();
    }
  }

  if (options_.metadata_server != kP2PHandshake) {
    auto client = metadata::NewMetadataClient(options_.metadata_server);
    if (!client.ok()) return client.status();
    metadata_ = std::move(*client);
    s = metadata_->Put(RpcMetaKey(segment_name_), RpcMetaToJson({host_, rpc_port_}));
    if (!s.ok()) {
      return MakeError(
          ToErrorCode(s) == ErrorCode::INTERNAL_ERROR ? ErrorCode::RPC_FAIL : ToErrorCode(s),
          absl::StrCat("cannot publish to metadata server ", options_.metadata_server, ": ",
                       s.message()));
    }
    if (absl::Status p = Publish(); !p.ok()) return p;
  }
  if (options_.copy_threads > 1) {
    copy_pool_ = std::make_unique<ThreadPoolExecutor>(options_.copy_threads - 1);
  }
  watchdog_ = std::thread([this] { WatchdogLoop(); });
  MC_LOG(INFO) << "transfer engine " << segment_name_ << " up (metadata "
               << options_.metadata_server << ", shm " << (shm_exporter_ ? "on" : "off") << ")";
  return absl::OkStatus();
}

TransferEngine::~TransferEngine() {
  stopping_.store(true);
  if (watchdog_.joinable()) watchdog_.join();
  if (rdma_progress_.joinable()) rdma_progress_.join();
  if (metadata_ != nullptr) {
    metadata_->Remove(SegmentDescriptorKey(segment_name_)).IgnoreError();
    metadata_->Remove(RpcMetaKey(segment_name_)).IgnoreError();
  }
  if (tcp_server_) tcp_server_->Stop();
  if (shm_exporter_) shm_exporter_->Stop();
  {
    absl::MutexLock lock(&seg_mu_);
    segments_.clear();
  }
  absl::MutexLock lock(&shm_mu_);
  for (auto& [addr, fd] : shm_fds_) {
    auto buf = registry_.Unregister(addr);
    if (buf.ok()) FreeSharedBuffer({reinterpret_cast<void*>(addr), buf->length, fd});
  }
}

std::string TransferEngine::DescriptorJson() const {
  SegmentDescriptor d;
  d.name = segment_name_;
  d.protocol = options_.protocol;
  d.host_id = LocalHostId();
  d.shm_socket = shm_exporter_ ? shm_exporter_->name() : "";
  d.tcp_host = host_;
  d.tcp_port = rpc_port_;
  d.instance = instance_;
  if (rdma_ != nullptr) {
    // One buffer per MR chunk, with rkeys; mark the ones same-host peers can map.
    rdma_->FillDescriptor(&d);
    for (BufferDesc& bd : d.buffers) {
      auto reg = registry_.Find(bd.addr, bd.length, /*remote=*/true);
      bd.shm = reg.ok() && reg->shm_fd >= 0 && reg->addr == bd.addr && reg->length == bd.length &&
               shm_exporter_ != nullptr;
    }
    return SegmentDescriptorToJson(d);
  }
  for (const RegisteredBuffer& b : registry_.Snapshot()) {
    if (!b.remote_accessible) continue;
    BufferDesc bd;
    bd.name = b.location;
    bd.addr = b.addr;
    bd.length = b.length;
    bd.shm = b.shm_fd >= 0 && shm_exporter_ != nullptr;
    d.buffers.push_back(std::move(bd));
  }
  return SegmentDescriptorToJson(d);
}

absl::Status TransferEngine::Publish() {
  // Every change of our buffers goes through here: tell same-host peers to re-read them.
  if (shm_exporter_ != nullptr) shm_exporter_->BumpGeneration();
  if (metadata_ == nullptr) return absl::OkStatus();  // P2P: peers ask us directly
  absl::Status s = metadata_->Put(SegmentDescriptorKey(segment_name_), DescriptorJson());
  if (!s.ok()) {
    return MakeError(ErrorCode::RPC_FAIL,
                     absl::StrCat("cannot publish segment ", segment_name_, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status TransferEngine::RegisterLocalMemory(void* addr, uint64_t length,
                                                 const std::string& location,
                                                 bool remote_accessible) {
  RegisteredBuffer b;
  b.addr = reinterpret_cast<uint64_t>(addr);
  b.length = length;
  b.location = location;
  b.remote_accessible = remote_accessible;
  if (absl::Status s = registry_.Register(b); !s.ok()) return s;
  if (rdma_ != nullptr) {
    if (absl::Status s = rdma_->RegisterMemory(b.addr, length, remote_accessible, location);
        !s.ok()) {
      registry_.Unregister(b.addr).IgnoreError();
      return s;
    }
  }
  if (remote_accessible) return Publish();
  return absl::OkStatus();
}

absl::Status TransferEngine::UnregisterLocalMemory(void* addr) {
  {
    absl::MutexLock lock(&shm_mu_);
    if (shm_fds_.count(reinterpret_cast<uint64_t>(addr))) {
      return MakeError(ErrorCode::INVALID_PARAMS, "use FreeSharedMemory for shared memory");
    }
  }
  auto removed = registry_.Unregister(reinterpret_cast<uint64_t>(addr));
  if (!removed.ok()) return removed.status();
  if (rdma_ != nullptr) rdma_->UnregisterMemory(removed->addr).IgnoreError();
  if (removed->remote_accessible) return Publish();
  return absl::OkStatus();
}

absl::StatusOr<void*> TransferEngine::AllocateSharedMemory(uint64_t length, bool populate) {
  absl::StatusOr<SharedBuffer> buf = AllocateSharedBuffer(length, "mooncake-segment", populate);
  if (!buf.ok()) return buf.status();
  RegisteredBuffer b;
  b.addr = reinterpret_cast<uint64_t>(buf->addr);
  b.length = length;
  b.shm_fd = buf->fd;
  if (absl::Status s = registry_.Register(b); !s.ok()) {
    FreeSharedBuffer(*buf);
    return s;
  }
  if (rdma_ != nullptr) {
    if (absl::Status s = rdma_->RegisterMemory(b.addr, length, true); !s.ok()) {
      registry_.Unregister(b.addr).IgnoreError();
      FreeSharedBuffer(*buf);
      return s;
    }
  }
  {
    absl::MutexLock lock(&shm_mu_);
    shm_fds_[b.addr] = buf->fd;
  }
  if (absl::Status s = Publish(); !s.ok()) return s;
  return buf->addr;
}

absl::Status TransferEngine::FreeSharedMemory(void* addr) {
  uint64_t a = reinterpret_cast<uint64_t>(addr);
  int fd;
  {
    absl::MutexLock lock(&shm_mu_);
    auto it = shm_fds_.find(a);
    if (it == shm_fds_.end()) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrFormat("%#x was not allocated by AllocateSharedMemory", a));
    }
    fd = it->second;
    shm_fds_.erase(it);
  }
  auto removed = registry_.Unregister(a);
  if (!removed.ok()) return removed.status();
  if (rdma_ != nullptr) rdma_->UnregisterMemory(a).IgnoreError();
  absl::Status published = Publish();  // peers see the new generation before the memory goes
  FreeSharedBuffer({addr, removed->length, fd});
  return published;
}

absl::StatusOr<SegmentDescriptor> TransferEngine::FetchDescriptor(const std::string& name) {
  if (metadata_ != nullptr) {
    absl::StatusOr<std::string> json = metadata_->Get(SegmentDescriptorKey(name));
    if (!json.ok()) {
      ErrorCode code = json.status().code() == absl::StatusCode::kNotFound
                           ? ErrorCode::SEGMENT_NOT_FOUND
                           : ErrorCode::RPC_FAIL;
      return MakeError(code, absl::StrCat("segment ", name, ": ", json.status().message()));
    }
    absl::StatusOr<SegmentDescriptor> desc = ParseSegmentDescriptor(*json);
    if (!desc.ok()) return desc.status();
    if (desc->tcp_host.empty() || desc->tcp_port == 0) {  // published by a Mooncake-shaped writer
      absl::StatusOr<std::string> meta = metadata_->Get(RpcMetaKey(name));
      if (!meta.ok()) return MakeError(ErrorCode::SEGMENT_NOT_FOUND, meta.status().message());
      absl::StatusOr<RpcMeta> rpc = ParseRpcMeta(*meta);
      if (!rpc.ok()) return rpc.status();
      desc->tcp_host = rpc->ip_or_host_name;
      desc->tcp_port = rpc->rpc_port;
    }
    return desc;
  }
  // P2P handshake: the segment name is the peer's host:port; ask it directly.
  absl::StatusOr<HostPort> peer = ParseHostPort(name);
  if (!peer.ok()) {
    return MakeError(ErrorCode::SEGMENT_NOT_FOUND,
                     absl::StrCat("in P2PHANDSHAKE mode segment names are host:port: ",
                                  peer.status().message()));
  }
  absl::StatusOr<std::string> json =
      ControlCall(peer->host, peer->port, FrameOp::kGetDescriptor, "", options_.connect_timeout);
  if (!json.ok()) {
    return MakeError(
        ErrorCode::SEGMENT_NOT_FOUND,
        absl::StrCat("segment ", name, ": handshake failed: ", json.status().message()));
  }
  return ParseSegmentDescriptor(*json);
}

absl::StatusOr<SegmentId> TransferEngine::OpenSegment(const std::string& name) {
  if (name.empty()) return MakeError(ErrorCode::INVALID_PARAMS, "empty segment name");
  std::shared_ptr<Segment> seg;
  SegmentId id;
  {
    absl::MutexLock lock(&seg_mu_);
    auto it = segment_ids_.find(name);
    if (it != segment_ids_.end()) return it->second;
    id = next_segment_id_++;
    seg = std::make_shared<Segment>(name);
  }
  // Resolve outside seg_mu_: it may block on the network.
  {
    absl::MutexLock lock(&seg->mu);
    if (name == segment_name_ && options_.allow_local_memcpy) {
      seg->route = Route::kLocal;
    } else {
      absl::StatusOr<SegmentDescriptor> desc = FetchDescriptor(name);
      if (!desc.ok()) return desc.status();
      seg->desc = std::move(*desc);
      SetupRoutes(seg.get());
    }
    seg->resolved = true;
  }
  absl::MutexLock lock(&seg_mu_);
  auto [it, inserted] = segment_ids_.emplace(name, id);
  if (!inserted) return it->second;  // another thread opened it meanwhile
  segments_[id] = std::move(seg);
  return id;
}

absl::Status TransferEngine::CloseSegment(SegmentId id) {
  absl::MutexLock lock(&seg_mu_);
  auto it = segments_.find(id);
  if (it == segments_.end()) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("unknown segment id ", id));
  }
  segment_ids_.erase(it->second->name);
  segments_.erase(it);
  return absl::OkStatus();
}

void TransferEngine::SetupRoutes(Segment* seg) {
  TcpPeerOptions tcp;
  tcp.lanes = options_.tcp_lanes;
  tcp.slice_size = options_.tcp_slice_size;
  tcp.connect_timeout = options_.connect_timeout;
  // Keep an existing TcpPeer when its address is unchanged: it reconnects its own lanes.
  if (seg->tcp == nullptr || seg->tcp->host() != seg->desc.tcp_host ||
      seg->tcp->port() != seg->desc.tcp_port) {
    seg->tcp = std::make_shared<TcpPeer>(seg->name, seg->desc.tcp_host, seg->desc.tcp_port, tcp);
  }
  seg->shared_desc = std::make_shared<const SegmentDescriptor>(seg->desc);
  seg->shm.reset();
  seg->route = Route::kTcp;
  seg->use_rdma = rdma_ != nullptr && seg->desc.protocol == "rdma" && !seg->desc.devices.empty();
  if (seg->use_rdma) seg->route = Route::kRdma;
  bool any_shared = false;
  for (const BufferDesc& b : seg->desc.buffers) any_shared |= b.shm;
  if (options_.allow_shm && shm_exporter_ != nullptr && seg->desc.host_id == LocalHostId() &&
      !seg->desc.shm_socket.empty() && any_shared) {
    absl::StatusOr<std::unique_ptr<ShmPeer>> shm = ShmPeer::Connect(seg->desc.shm_socket);
    if (shm.ok()) {
      // Read the generation, then the descriptor again: a change after this read bumps it.
      seg->shm_generation = (*shm)->Generation();
      absl::StatusOr<SegmentDescriptor> fresh = FetchDescriptor(seg->name);
      if (fresh.ok()) {
        seg->desc = std::move(*fresh);
        seg->shared_desc = std::make_shared<const SegmentDescriptor>(seg->desc);
      }
      seg->shm = std::move(*shm);
      seg->route = Route::kShm;
    } else {
      MC_LOG(WARNING) << "segment " << seg->name
                      << ": shared memory unavailable, using TCP: " << shm.status();
    }
  }
}

std::shared_ptr<TransferEngine::Segment> TransferEngine::GetSegment(SegmentId id) {
  absl::MutexLock lock(&seg_mu_);
  auto it = segments_.find(id);
  return it == segments_.end() ? nullptr : it->second;
}

absl::StatusOr<TransferEngine::Route> TransferEngine::RouteTo(SegmentId id) {
  std::shared_ptr<Segment> seg = GetSegment(id);
  if (seg == nullptr) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("unknown segment id ", id));
  }
  absl::MutexLock lock(&seg->mu);
  return seg->route;
}

std::shared_ptr<TransferBatch> TransferEngine::Submit(
    const std::vector<TransferRequest>& requests) {
  auto batch = std::make_shared<TransferBatch>(requests.size());
  std::set<TcpPeer*> touched;
  std::set<Segment*> refreshed;
  std::vector<std::shared_ptr<TcpPeer>> keep_alive;
  // Same-process and shared-memory requests become plain copies, run together at the end.
  std::vector<PendingCopy> copies;
  std::vector<std::shared_ptr<ShmPeer>> mappings_in_use;
  for (size_t i = 0; i < requests.size(); ++i) {
    const TransferRequest& r = requests[i];
    const bool is_write = r.opcode == TransferRequest::Opcode::kWrite;
    char* local = static_cast<char*>(r.local);
    if (r.length == 0) {
      batch->Finish(i, absl::OkStatus());
      continue;
    }
    if (auto lb = registry_.Find(reinterpret_cast<uint64_t>(local), r.length, false); !lb.ok()) {
      batch->Finish(i, MakeError(ErrorCode::INVALID_PARAMS,
                                 absl::StrCat("local buffer: ", lb.status().message())));
      continue;
    }
    std::shared_ptr<Segment> seg = GetSegment(r.segment);
    if (seg == nullptr) {
      batch->Finish(
          i, MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("unknown segment id ", r.segment)));
      continue;
    }
    absl::MutexLock lock(&seg->mu);
    if (seg->route == Route::kLocal) {
      if (r.segment_instance != 0 && r.segment_instance != instance_) {
        batch->Finish(i, WrongIncarnation(seg->name));
        continue;
      }
      char* remote = reinterpret_cast<char*>(r.remote_addr);
      copies.push_back({i, is_write ? remote : local, is_write ? local : remote, r.length,
                        /*check_remote=*/true});
      continue;
    }
    if (seg->stale) {
      // A connection to this peer failed: refresh its descriptor (it may have restarted).
      absl::StatusOr<SegmentDescriptor> desc = FetchDescriptor(seg->name);
      if (!desc.ok()) {
        batch->Finish(i, MakeError(ErrorCode::TRANSFER_FAIL,
                                   absl::StrCat("peer ", seg->name,
                                                " unreachable: ", desc.status().message())));
        continue;
      }
      seg->desc = std::move(*desc);
      seg->stale = false;
      SetupRoutes(seg.get());
    }
    const bool shm_changed = seg->shm != nullptr && seg->shm->Generation() != seg->shm_generation;
    const bool other_instance = r.segment_instance != 0 && seg->desc.instance != r.segment_instance;
    const BufferDesc* remote = seg->desc.FindBuffer(r.remote_addr, r.length);
    if ((remote == nullptr || shm_changed || other_instance) && !refreshed.count(seg.get())) {
      // The peer registered or freed memory since we read its descriptor: read it again (once per
      // batch and segment) before deciding.
      refreshed.insert(seg.get());
      absl::StatusOr<SegmentDescriptor> desc = FetchDescriptor(seg->name);
      if (desc.ok()) {
        seg->desc = std::move(*desc);
        SetupRoutes(seg.get());
        remote = seg->desc.FindBuffer(r.remote_addr, r.length);
      }
    }
    if (r.segment_instance != 0 && seg->desc.instance != r.segment_instance) {
      batch->Finish(i, WrongIncarnation(seg->name));
      continue;
    }
    if (remote == nullptr) {
      batch->Finish(i, MakeError(ErrorCode::INVALID_PARAMS,
                                 absl::StrFormat("remote range [%#x, +%u) is outside every buffer "
                                                 "of segment %s",
                                                 r.remote_addr, r.length, seg->name)));
      continue;
    }
    if (remote->shm && seg->shm != nullptr) {
      if (!seg->shm->Alive()) {
        seg->shm.reset();
        seg->stale = true;
        seg->route = Route::kTcp;
        batch->Finish(
            i, MakeError(ErrorCode::TRANSFER_FAIL, absl::StrCat("peer ", seg->name, " is gone")));
        continue;
      }
      absl::StatusOr<char*> mapped =
          seg->shm->Translate(remote->addr, remote->length, r.remote_addr);
      if (!mapped.ok()) {
        batch->Finish(i, mapped.status());
        continue;
      }
      if (mappings_in_use.empty() || mappings_in_use.back() != seg->shm) {
        mappings_in_use.push_back(seg->shm);  // the mapping outlives the copy
      }
      copies.push_back({i, is_write ? *mapped : local, is_write ? local : *mapped, r.length,
                        /*check_remote=*/false});
      continue;
    }
    if (seg->use_rdma) {
      rdma_->Submit(batch, i, is_write, reinterpret_cast<uint64_t>(local), r.remote_addr, r.length,
                    seg->shared_desc);
      continue;
    }
    seg->tcp->Submit(batch, i, is_write, local, r.remote_addr, r.length);
    if (touched.insert(seg->tcp.get()).second) keep_alive.push_back(seg->tcp);
  }
  for (const auto& peer : keep_alive) peer->Flush();  // network first: it overlaps the copies
  if (!copies.empty()) RunCopies(requests, &copies, batch.get());
  return batch;
}

void TransferEngine::RunCopies(const std::vector<TransferRequest>& requests,
                               std::vector<PendingCopy>* copies, TransferBatch* batch) {
  // Every range stays registered until the copies are done: Unregister waits for the view.
  MemoryRegistry::ReadView view(registry_);
  std::vector<CopyChunk> chunks;
  std::vector<size_t> done;
  for (PendingCopy& c : *copies) {
    const TransferRequest& r = requests[c.request];
    absl::Status s = view.Find(reinterpret_cast<uint64_t>(r.local), r.length, false).status();
    if (s.ok() && c.check_remote) s = view.Find(r.remote_addr, r.length, true).status();
    if (!s.ok()) {
      batch->Finish(c.request, s);
      continue;
    }
    const bool overlap = c.dst < c.src + c.length && c.src < c.dst + c.length;
    if (overlap) {
      memmove(c.dst, c.src, c.length);  // only a request within one engine's own memory
    } else {
      for (uint64_t off = 0; off < c.length; off += kCopyChunk) {
        chunks.push_back({c.dst + off, c.src + off, std::min(kCopyChunk, c.length - off)});
      }
    }
    done.push_back(c.request);
  }
  ParallelCopy(chunks);
  for (size_t request : done) batch->Finish(request, absl::OkStatus());
}

void TransferEngine::ParallelCopy(const std::vector<CopyChunk>& chunks) {
  uint64_t total = 0;
  for (const CopyChunk& c : chunks) total += c.length;
  std::atomic<size_t> next{0};
  auto work = [&chunks, &next] {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < chunks.size();) {
      memcpy(chunks[i].dst, chunks[i].src, chunks[i].length);
    }
  };
  // Small batches are not worth waking a helper; large ones use every core (one thread's memcpy
  // is bound by its own memory latency, not by the memory bus).
  const int helpers = copy_pool_ == nullptr || total < kParallelCopyThreshold
                          ? 0
                          : std::min<int>(options_.copy_threads - 1, chunks.size() - 1);
  if (helpers <= 0) {
    work();
    return;
  }
  absl::BlockingCounter pending(helpers);
  for (int h = 0; h < helpers; ++h) {
    copy_pool_->Schedule([&work, &pending] {
      work();
      pending.DecrementCount();
    });
  }
  work();
  pending.Wait();
}

std::vector<absl::Status> TransferEngine::Transfer(const std::vector<TransferRequest>& requests) {
  std::shared_ptr<TransferBatch> batch = Submit(requests);
  batch->Wait();  // the watchdog bounds how long any request can stay in flight
  return batch->statuses();
}

void TransferEngine::RdmaProgressLoop() {
  // Busy-poll while there is work; back off to short sleeps when idle.
  int idle_rounds = 0;
  while (!stopping_.load()) {
    if (rdma_->Poll() > 0) {
      idle_rounds = 0;
      continue;
    }
    if (++idle_rounds > 64) usleep(rdma_->Idle() ? 200 : 5);
  }
}

void TransferEngine::WatchdogLoop() {
  while (!stopping_.load()) {
    usleep(50 * 1000);
    std::vector<std::shared_ptr<Segment>> segs;
    {
      absl::MutexLock lock(&seg_mu_);
      for (auto& [id, s] : segments_) segs.push_back(s);
    }
    for (auto& seg : segs) {
      std::shared_ptr<TcpPeer> tcp;
      {
        absl::MutexLock lock(&seg->mu);
        tcp = seg->tcp;
      }
      if (tcp == nullptr) continue;
      tcp->CheckTimeouts(options_.transfer_timeout);
      if (tcp->TakeFailureFlag()) {
        absl::MutexLock lock(&seg->mu);
        seg->stale = true;
      }
    }
  }
}

}  // namespace mooncake
