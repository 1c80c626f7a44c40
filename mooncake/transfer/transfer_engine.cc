// TransferEngine: setup, memory registration, the control requests it answers, and the submit
// path (validate each request once, hand it to its segment's route). The segment table is in
// segment_table.cc.
#include "mooncake/transfer/transfer_engine.h"

#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/metadata/metadata_client.h"
#include "mooncake/net/host_port.h"
#include "mooncake/transfer/host_id.h"
#include "mooncake/transfer/rdma/ib_verbs.h"
#include "mooncake/transfer/shm/shared_memory.h"
#include "mooncake/transfer/tcp/tcp_data_server.h"
#include "mooncake/transfer/tcp/tcp_frame.h"
#include "mooncake/transfer/tcp/tcp_transport.h"
#include "mooncake/transfer/transfer_engine_internal.h"

namespace mooncake {

constexpr char kP2PHandshake[] = "P2PHANDSHAKE";

int DefaultCopyThreads() {
  unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::max(1u, std::min(cores, 4u)));
}

absl::Status TransferEngineOptions::ApplyEnv() {
  auto env = [](const char* name) -> const char* { return std::getenv(name); };
  if (env(kAuthTokenEnv) != nullptr) {
    absl::StatusOr<std::string> token = AuthTokenFromEnv();
    if (!token.ok()) return token.status();
    auth_token = *token;
  }
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
  auto small_int = [&](const char* name, int lo, int hi, int* out) -> absl::Status {
    const char* v = env(name);
    if (v == nullptr) return absl::OkStatus();
    if (!absl::SimpleAtoi(v, out) || *out < lo || *out > hi) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat(name, "=\"", v, "\": expected ", lo, "..", hi));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = small_int("MC_COPY_THREADS", 1, 64, &copy_threads); !s.ok()) return s;
  if (absl::Status s = small_int("MC_GID_INDEX", 0, 255, &rdma.gid_index); !s.ok()) return s;
  int port = rdma.port;
  if (absl::Status s = small_int("MC_IB_PORT", 1, 255, &port); !s.ok()) return s;
  rdma.port = static_cast<uint8_t>(port);
  if (absl::Status s = small_int("MC_MTU", 256, 4096, &rdma.path_mtu); !s.ok()) return s;
  if (const char* v = env("MC_DISABLE_SHM")) {
    std::string s = absl::AsciiStrToLower(v);
    if (s == "1" || s == "true" || s == "yes") allow_shm = false;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TransferEngine>> TransferEngine::Create(
    TransferEngineOptions options, TransferEngineSeams seams) {
  if (options.protocol != "tcp" && options.protocol != "rdma") {
    return MakeError(ErrorCode::NOT_SUPPORTED,
                     absl::StrCat("protocol \"", options.protocol,
                                  "\" is not supported; use \"tcp\" or \"rdma\""));
  }
  if (options.tcp_lanes < 1 || options.tcp_slice_size == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS, "tcp_lanes and tcp_slice_size must be positive");
  }
  if (seams.wake && seams.executor == nullptr) {
    return MakeError(ErrorCode::INVALID_PARAMS, "an engine driven from outside needs an executor");
  }
  std::unique_ptr<TransferEngine> engine(new TransferEngine(std::move(options), std::move(seams)));
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

TransferEngine::TransferEngine(TransferEngineOptions options, TransferEngineSeams seams)
    : options_(std::move(options)),
      seams_(std::move(seams)),
      clock_(seams_.clock != nullptr ? seams_.clock : RealClock::Get()),
      instance_(seams_.instance != 0 ? seams_.instance : NewInstance()) {}

absl::Status TransferEngine::Init() {
  host_id_ = seams_.host_id.empty() ? LocalHostId() : seams_.host_id;
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
  const bool driven = seams_.wake != nullptr;
  if (seams_.executor != nullptr) {
    executor_ = seams_.executor;
  } else {
    own_executor_ = std::make_unique<ThreadPoolExecutor>(4);
    executor_ = own_executor_.get();
  }
  if (seams_.control != nullptr) {
    control_ = seams_.control;
  } else {
    tcp_control_ = NewTcpControl();
    control_ = tcp_control_.get();
  }

  if (options_.serve_tcp) {
    std::string bind = options_.bind_address.empty() ? host_ : options_.bind_address;
    TcpDataServerOptions server_options;
    server_options.auth_token = options_.auth_token;
    tcp_server_ = std::make_unique<TcpDataServer>(
        &registry_,
        [this](FrameOp op, const std::string& payload) { return HandleControl(op, payload); },
        server_options);
    tcp_server_->SetServiceFn([this](const std::string& payload, ControlReplyStream& reply) {
      return HandleServiceStream(payload, reply);
    });
    absl::Status s = tcp_server_->Start(bind, port);
    if (!s.ok()) {
      return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("transfer engine cannot listen on ",
                                                               bind, ":", port, ": ", s.message()));
    }
    rpc_port_ = tcp_server_->port();
  } else {
    if (port == 0) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       "an engine that serves no TCP port needs local_server_name host:port");
    }
    rpc_port_ = port;
  }
  segment_name_ = FormatHostPort(host_, rpc_port_);

  if (options_.protocol == "rdma") {
    Verbs* verbs = seams_.verbs;
    if (verbs == nullptr) {
      owned_verbs_ = std::make_unique<IbVerbs>();
      verbs = owned_verbs_.get();
    }
    RdmaOptions rdma = options_.rdma;
    rdma.instance = instance_.load();
    if (!options_.rdma_devices.empty()) rdma.devices = options_.rdma_devices;
    rdma_ =
        std::make_unique<RdmaTransport>(verbs, clock_, control_, segment_name_, rdma, executor_);
    if (absl::Status r = rdma_->Init(); !r.ok()) {
      return MakeError(ToErrorCode(r),
                       absl::StrCat("cannot start the RDMA transport: ", r.message()));
    }
    if (!driven) rdma_progress_ = std::thread([this] { RdmaProgressLoop(); });
  }

  if (options_.allow_shm) {
    shm_exporter_ = std::make_unique<ShmExporter>(&registry_, options_.auth_token);
    std::string name = absl::StrFormat("mooncake-shm-%d-%d-%x", getpid(), rpc_port_,
                                       reinterpret_cast<uintptr_t>(this));
    if (absl::Status e = shm_exporter_->Start(name); !e.ok()) {
      MC_LOG(WARNING) << "shared-memory transport disabled: " << e;
      shm_exporter_.reset();
    }
  }

  // Peers learn of this engine from the metadata below: its control requests are served from here.
  control_ready_.store(true, std::memory_order_release);
  if (seams_.metadata != nullptr) {
    metadata_ = seams_.metadata;
  } else if (options_.metadata_server != kP2PHandshake) {
    auto client = metadata::NewMetadataClient(options_.metadata_server, options_.auth_token);
    if (!client.ok()) return client.status();
    metadata_ = std::move(*client);
  }
  if (metadata_ != nullptr) {
    absl::Status s = metadata_->Put(RpcMetaKey(segment_name_), RpcMetaToJson({host_, rpc_port_}));
    if (!s.ok()) {
      return MakeError(
          ToErrorCode(s) == ErrorCode::INTERNAL_ERROR ? ErrorCode::RPC_FAIL : ToErrorCode(s),
          absl::StrCat("cannot publish to metadata server ", options_.metadata_server, ": ",
                       s.message()));
    }
    if (absl::Status p = Publish(); !p.ok()) return p;
  }
  if (options_.copy_threads > 1 && !driven) {
    copy_pool_ = std::make_unique<ThreadPoolExecutor>(options_.copy_threads - 1);
  }
  copier_ = std::make_unique<CopyRunner>(&registry_, copy_pool_.get(), options_.copy_threads);
  if (!driven) watchdog_ = std::thread([this] { WatchdogLoop(); });
  MC_LOG(INFO) << "transfer engine " << segment_name_ << " up (metadata "
               << options_.metadata_server << ", shm " << (shm_exporter_ ? "on" : "off") << ")";
  return absl::OkStatus();
}

TransferEngine::~TransferEngine() {
  stopping_.store(true);
  *alive_ = false;
  if (watchdog_.joinable()) watchdog_.join();
  if (rdma_progress_.joinable()) rdma_progress_.join();
  own_executor_.reset();  // queued background work sees alive_ false and returns
  if (metadata_ != nullptr) {
    metadata_->Remove(SegmentDescriptorKey(segment_name_)).IgnoreError();
    metadata_->Remove(RpcMetaKey(segment_name_)).IgnoreError();
  }
  if (tcp_server_) tcp_server_->Stop();
  if (shm_exporter_) shm_exporter_->Stop();
  {
    absl::MutexLock lock(&seg_mu_);
    segments_.clear();
    segment_ids_.clear();
  }
  rdma_.reset();
  absl::MutexLock lock(&shm_mu_);
  for (auto& [addr, fd] : shm_fds_) {
    auto buf = registry_.Unregister(addr);
    if (buf.ok()) FreeSharedBuffer({reinterpret_cast<void*>(addr), buf->length, fd});
  }
}

void TransferEngine::Schedule(std::function<void()> fn) {
  executor_->Schedule([alive = std::weak_ptr<bool>(alive_), fn = std::move(fn)] {
    std::shared_ptr<bool> a = alive.lock();
    if (a != nullptr && *a) fn();
  });
}

absl::StatusOr<std::string> TransferEngine::HandleControl(FrameOp op, const std::string& payload) {
  if (!control_ready_.load(std::memory_order_acquire)) {
    return MakeError(ErrorCode::UNAVAILABLE_IN_CURRENT_STATUS, "the transfer engine is starting");
  }
  if (op == FrameOp::kGetDescriptor) return DescriptorJson();
  if (op == FrameOp::kRdmaHandshake) {
    absl::StatusOr<EndpointInfo> theirs = ParseEndpointInfo(payload);
    if (!theirs.ok()) return MakeError(ErrorCode::INVALID_PARAMS, theirs.status().message());
    absl::StatusOr<EndpointInfo> mine = AcceptRdma(*theirs);
    if (!mine.ok()) return mine.status();
    return EndpointInfoToJson(*mine);
  }
  return MakeError(ErrorCode::NOT_SUPPORTED, "unknown control request");
}

void TransferEngine::SetServiceHandler(ServiceHandler handler) {
  absl::MutexLock lock(&service_mu_);
  service_ = handler ? std::make_shared<const ServiceHandler>(std::move(handler)) : nullptr;
}

absl::Status TransferEngine::HandleServiceStream(const std::string& request,
                                                 ControlReplyStream& reply) {
  if (!control_ready_.load(std::memory_order_acquire)) {
    return MakeError(ErrorCode::UNAVAILABLE_IN_CURRENT_STATUS, "the transfer engine is starting");
  }
  std::shared_ptr<const ServiceHandler> handler;
  {
    absl::MutexLock lock(&service_mu_);
    handler = service_;
  }
  if (handler == nullptr) {
    return MakeError(ErrorCode::NOT_SUPPORTED,
                     absl::StrCat("engine ", segment_name_, " serves no requests (no SSD tier)"));
  }
  return (*handler)(request, reply);
}

absl::StatusOr<std::string> TransferEngine::HandleService(const std::string& request) {
  class StringStream final : public ControlReplyStream {
   public:
    absl::Status Begin(uint64_t length) override {
      out.reserve(length);
      return absl::OkStatus();
    }
    absl::Status Write(const void* data, uint64_t n) override {
      out.append(static_cast<const char*>(data), n);
      return absl::OkStatus();
    }
    std::string out;
  };
  StringStream stream;
  if (absl::Status s = HandleServiceStream(request, stream); !s.ok()) return s;
  return std::move(stream.out);
}

absl::StatusOr<std::string> TransferEngine::CallService(const std::string& segment,
                                                        const std::string& request) {
  return control_->CallService(segment, request);
}

absl::Status TransferEngine::CallServiceInto(const std::string& segment, const std::string& request,
                                             const PeerControl::ReplyConsumer& consume) {
  return control_->CallServiceInto(segment, request, consume);
}

absl::StatusOr<EndpointInfo> TransferEngine::AcceptRdma(const EndpointInfo& remote) {
  if (rdma_ == nullptr) {
    return MakeError(ErrorCode::NOT_SUPPORTED, "this engine does not run the RDMA transport");
  }
  return rdma_->Accept(remote);
}

std::string TransferEngine::DescriptorJson() const {
  SegmentDescriptor d;
  d.name = segment_name_;
  d.protocol = options_.protocol;
  d.host_id = host_id_;
  d.shm_socket = shm_exporter_ ? shm_exporter_->name() : "";
  d.tcp_host = host_;
  d.tcp_port = rpc_port_;
  d.instance = instance_.load();
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

void TransferEngine::EnsurePublished() {
  if (metadata_ == nullptr) return;
  auto got = metadata_->Get(SegmentDescriptorKey(segment_name_));
  // Present, or the server is unreachable now (the next round tries again).
  if (got.ok() || !absl::IsNotFound(got.status())) return;
  MC_LOG(WARNING) << "the metadata server has no descriptor of segment " << segment_name_
                  << " (restarted?); publishing it again";
  (void)metadata_->Put(RpcMetaKey(segment_name_), RpcMetaToJson({host_, rpc_port_}));
  if (absl::Status s = Publish(); !s.ok()) MC_LOG(WARNING) << s;
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

std::shared_ptr<TransferBatch> TransferEngine::Submit(const std::vector<TransferRequest>& requests,
                                                      TransferBatch::Callback on_done) {
  auto batch = std::make_shared<TransferBatch>(requests.size(), std::move(on_done));
  if (requests.empty()) {
    batch->RunCallbackIfEmpty();
    return batch;
  }
  SubmitContext ctx(batch);
  std::vector<Segment*> refreshed;  // once per batch and segment
  // Views used by this Submit; their routes stay alive until the work is queued.
  std::vector<std::shared_ptr<const SegmentView>> views;
  const int64_t now = clock_->NowNanos();
  for (size_t i = 0; i < requests.size(); ++i) {
    const TransferRequest& r = requests[i];
    const TransferOp op{i, r.opcode == TransferRequest::Opcode::kWrite, static_cast<char*>(r.local),
                        r.remote_addr, r.length};
    if (r.length == 0) {
      batch->Finish(i, absl::OkStatus());
      continue;
    }
    if (auto lb = registry_.Find(reinterpret_cast<uint64_t>(r.local), r.length, false); !lb.ok()) {
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
    seg->last_used_ns.store(now, std::memory_order_relaxed);
    absl::StatusOr<std::shared_ptr<const SegmentView>> resolved = View(seg.get());
    if (!resolved.ok()) {
      batch->Finish(i, MakeError(ErrorCode::TRANSFER_FAIL,
                                 absl::StrCat("peer ", seg->name,
                                              " unreachable: ", resolved.status().message())));
      continue;
    }
    std::shared_ptr<const SegmentView> view = std::move(*resolved);
    if (view->self) {
      if (r.segment_instance != 0 && r.segment_instance != instance_.load()) {
        batch->Finish(i, WrongIncarnation(seg->name));
        continue;
      }
      view->routes.front()->Submit(op, &ctx);
      views.push_back(std::move(view));
      continue;
    }
    // Decide against one view; if it looks out of date, read the peer again (once per batch).
    bool wrong_instance = false, covered = false, healthy = false;
    const Route* route = nullptr;
    auto judge = [&] {
      wrong_instance = r.segment_instance != 0 && view->desc->instance != r.segment_instance;
      covered = view->desc->Covers(r.remote_addr, r.length);
      route = covered ? view->RouteFor(r.remote_addr, r.length) : nullptr;
      healthy = route != nullptr && const_cast<Route*>(route)->Healthy();
    };
    judge();
    if ((wrong_instance || !covered || !healthy) &&
        std::find(refreshed.begin(), refreshed.end(), seg.get()) == refreshed.end()) {
      refreshed.push_back(seg.get());
      absl::StatusOr<std::shared_ptr<const SegmentView>> again = Refresh(seg.get(), view);
      if (again.ok()) {
        view = std::move(*again);
        judge();
      }
    }
    if (wrong_instance) {
      batch->Finish(i, WrongIncarnation(seg->name));
      continue;
    }
    if (!covered) {
      batch->Finish(i, MakeError(ErrorCode::INVALID_PARAMS,
                                 absl::StrFormat("remote range [%#x, +%u) is outside every buffer "
                                                 "of segment %s",
                                                 r.remote_addr, r.length, seg->name)));
      continue;
    }
    if (route == nullptr || !healthy) {
      {
        absl::MutexLock lock(&seg->mu);
        seg->stale = true;
      }
      batch->Finish(
          i, MakeError(ErrorCode::TRANSFER_FAIL,
                       absl::StrCat("peer ", seg->name,
                                    route == nullptr ? " has no route from here" : " is gone")));
      continue;
    }
    const_cast<Route*>(route)->Submit(op, &ctx);
    views.push_back(std::move(view));
  }
  ctx.Finish(*copier_);  // network work first, then the copies
  return batch;
}

std::vector<absl::Status> TransferEngine::Transfer(const std::vector<TransferRequest>& requests) {
  std::shared_ptr<TransferBatch> batch = Submit(requests);
  // Every transport finishes its requests within transfer_timeout (TCP: the watchdog, then the
  // fence of a broken connection; RDMA: its retry budget); the margin covers the fence.
  const absl::Duration bound =
      options_.transfer_timeout + 2 * options_.connect_timeout + absl::Seconds(1);
  if (!batch->Wait(bound)) {
    MC_LOG(ERROR) << "transfer engine " << segment_name_ << ": a batch of " << requests.size()
                  << " requests did not finish within " << absl::FormatDuration(bound);
    std::vector<absl::Status> out = batch->statuses();
    for (absl::Status& s : out) {
      if (absl::IsUnavailable(s) && s.message() == "pending") {
        s = MakeError(ErrorCode::TRANSFER_FAIL,
                      absl::StrCat("did not finish within ", absl::FormatDuration(bound)));
      }
    }
    return out;
  }
  return batch->statuses();
}

int TransferEngine::Poll() { return rdma_ != nullptr ? rdma_->Poll() : 0; }

bool TransferEngine::Idle() const { return rdma_ == nullptr || rdma_->Idle(); }

void TransferEngine::SetTcpFaultHookForTesting(std::function<void(const FrameHeader&)> hook) {
  if (tcp_server_ != nullptr) tcp_server_->SetFaultHookForTesting(std::move(hook));
}

uint64_t TransferEngine::FenceInbound() {
  // The next instance is the last plus one: a process's instances only grow, so the master can
  // tell a late, repeated mount of an earlier one from the newer (0 means "unknown").
  uint64_t next = instance_.load() + 1;
  if (next == 0) next = 1;
  instance_.store(next);
  if (rdma_ != nullptr) rdma_->Fence(next);
  if (tcp_server_ != nullptr) tcp_server_->FenceAll();
  if (absl::Status s = Publish(); !s.ok()) {
    MC_LOG(WARNING) << "transfer engine " << segment_name_
                    << ": cannot publish the new instance after a fence: " << s;
  }
  return next;
}

TransferEngine::Stats TransferEngine::GetStats() const {
  Stats s;
  {
    absl::MutexLock lock(&seg_mu_);
    s.segments = segments_.size();
  }
  if (rdma_ != nullptr) {
    s.rdma_peers = rdma_->num_peers();
    s.rdma_accepted = rdma_->num_accepted();
  }
  return s;
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

}  // namespace mooncake
