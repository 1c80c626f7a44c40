// TransferEngine's segment table: opening segments, reading peers' descriptors, building and
// refreshing their routes, the watchdog, and forgetting peers that are gone. Network I/O here
// (descriptor fetches, shared-memory connects, probes) never happens under a lock that other
// segments, the watchdog or the RDMA poller need; a refresh holds only its own segment's refresh
// lock, and a failed one is not retried before reconnect_backoff.
#include <unistd.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/metadata/metadata_client.h"
#include "mooncake/net/host_port.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/transfer/rdma/rdma_route.h"
#include "mooncake/transfer/shm/shared_memory.h"
#include "mooncake/transfer/shm/shm_route.h"
#include "mooncake/transfer/tcp/tcp_control.h"
#include "mooncake/transfer/tcp/tcp_frame.h"
#include "mooncake/transfer/tcp/tcp_route.h"
#include "mooncake/transfer/transfer_engine.h"
#include "mooncake/transfer/transfer_engine_internal.h"

namespace mooncake {
namespace {

// LocalRoute: requests to this engine's own segment are copies within the process; the remote
// range is checked against our own registrations when the copy runs.
class LocalRoute final : public Route {
 public:
  RouteKind kind() const override { return RouteKind::kLocal; }
  bool Serves(uint64_t, uint64_t) const override { return true; }
  void Submit(const TransferOp& op, SubmitContext* ctx) override {
    CopyRunner::Copy copy;
    copy.index = op.index;
    copy.write = op.write;
    copy.local = op.local;
    copy.mapped = reinterpret_cast<char*>(op.remote);
    copy.length = op.length;
    copy.check_remote = true;
    ctx->AddCopy(copy);
  }
};

}  // namespace

const Route* TransferEngine::SegmentView::RouteFor(uint64_t remote, uint64_t length) const {
  for (const std::shared_ptr<Route>& r : routes) {
    if (r->Serves(remote, length)) return r.get();
  }
  return nullptr;
}

std::shared_ptr<TcpPeer> TransferEngine::SegmentView::tcp_peer() const {
  for (const std::shared_ptr<Route>& r : routes) {
    if (r->kind() == RouteKind::kTcp) return static_cast<TcpRoute*>(r.get())->peer();
  }
  return nullptr;
}

// TcpControl: PeerControl over control frames to the peer's TCP data server.
class TransferEngine::TcpControl final : public PeerControl {
 public:
  explicit TcpControl(TransferEngine* engine) : engine_(engine) {}

  absl::StatusOr<std::string> GetDescriptor(const std::string& segment) override {
    absl::StatusOr<HostPort> peer = ParseHostPort(segment);
    if (!peer.ok()) {
      return MakeError(ErrorCode::SEGMENT_NOT_FOUND,
                       absl::StrCat("in P2PHANDSHAKE mode segment names are host:port: ",
                                    peer.status().message()));
    }
    return Call(segment, peer->host, peer->port, FrameOp::kGetDescriptor, "");
  }

  absl::StatusOr<EndpointInfo> Exchange(const std::string& segment,
                                        const EndpointInfo& mine) override {
    absl::StatusOr<std::string> reply =
        CallPeer(segment, FrameOp::kRdmaHandshake, EndpointInfoToJson(mine));
    if (!reply.ok()) return reply.status();
    return ParseEndpointInfo(*reply);
  }

  absl::StatusOr<std::string> CallService(const std::string& segment,
                                          const std::string& request) override {
    return CallPeer(segment, FrameOp::kService, request);
  }

  absl::Status CallServiceInto(const std::string& segment, const std::string& request,
                               const ReplyConsumer& consume) override {
    absl::StatusOr<HostPort> peer = PeerAddress(segment);
    if (!peer.ok()) return peer.status();
    absl::Status s = ControlCallInto(peer->host, peer->port, FrameOp::kService, request,
                                     engine_->options_.connect_timeout,
                                     engine_->options_.auth_token, [&](int fd, uint64_t length) {
                                       SocketReader reader(fd, length);
                                       absl::Status consumed = consume(reader);
                                       // A consumer that stops early leaves the frame unread: an
                                       // error, never a silent cut.
                                       if (consumed.ok() && reader.left() != 0) {
                                         consumed = absl::DataLossError("reply not fully read");
                                       }
                                       return consumed;
                                     });
    return Refused(segment, *peer, std::move(s));
  }

 private:
  class SocketReader final : public ReplyReader {
   public:
    SocketReader(int fd, uint64_t length) : fd_(fd), left_(length), size_(length) {}
    uint64_t size() const override { return size_; }
    uint64_t left() const { return left_; }
    absl::Status Read(void* dst, uint64_t n) override {
      if (n > left_) return absl::OutOfRangeError("read past the end of the reply");
      left_ -= n;
      return RecvAll(fd_, dst, n);
    }

   private:
    const int fd_;
    uint64_t left_;
    const uint64_t size_;
  };

  // The control address the peer published, else the one its name says.
  absl::StatusOr<HostPort> PeerAddress(const std::string& segment) {
    std::shared_ptr<const SegmentView> view = engine_->CurrentView(segment);
    if (view != nullptr && view->desc != nullptr && view->desc->tcp_port != 0) {
      return HostPort{view->desc->tcp_host, view->desc->tcp_port};
    }
    if (absl::StatusOr<HostPort> hp = ParseHostPort(segment); hp.ok()) return *hp;
    return MakeError(ErrorCode::SEGMENT_NOT_FOUND, segment);
  }

  absl::StatusOr<std::string> CallPeer(const std::string& segment, FrameOp op,
                                       const std::string& payload) {
    absl::StatusOr<HostPort> peer = PeerAddress(segment);
    if (!peer.ok()) return peer.status();
    return Call(segment, peer->host, peer->port, op, payload);
  }

  // A refused connection means the peer's process is gone.
  static absl::Status Refused(const std::string& segment, const HostPort& peer, absl::Status s) {
    if (!s.ok() && SocketErrno(s) == ECONNREFUSED) {
      return MakeError(
          ErrorCode::SEGMENT_NOT_FOUND,
          absl::StrCat("segment ", segment, ": nothing listens at ",
                       FormatHostPort(peer.host, peer.port), " (the process is gone)"));
    }
    return s;
  }

  absl::StatusOr<std::string> Call(const std::string& segment, const std::string& host, int port,
                                   FrameOp op, const std::string& payload) {
    absl::StatusOr<std::string> reply = ControlCall(
        host, port, op, payload, engine_->options_.connect_timeout, engine_->options_.auth_token);
    if (!reply.ok()) return Refused(segment, HostPort{host, port}, reply.status());
    return reply;
  }

  TransferEngine* const engine_;
};

std::unique_ptr<PeerControl> TransferEngine::NewTcpControl() {
  return std::make_unique<TcpControl>(this);
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
  // P2P handshake: ask the peer directly.
  absl::StatusOr<std::string> json = control_->GetDescriptor(name);
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
    if (it != segment_ids_.end()) {
      segments_[it->second]->last_used_ns.store(clock_->NowNanos(), std::memory_order_relaxed);
      return it->second;
    }
    id = next_segment_id_++;
    seg = std::make_shared<Segment>(name);
  }
  // Resolve outside seg_mu_: it may block on the network.
  absl::StatusOr<std::shared_ptr<const SegmentView>> view = Refresh(seg.get(), nullptr);
  if (!view.ok()) return view.status();
  seg->last_used_ns.store(clock_->NowNanos(), std::memory_order_relaxed);
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

std::shared_ptr<TransferEngine::Segment> TransferEngine::GetSegment(SegmentId id) {
  absl::MutexLock lock(&seg_mu_);
  auto it = segments_.find(id);
  return it == segments_.end() ? nullptr : it->second;
}

std::shared_ptr<const TransferEngine::SegmentView> TransferEngine::CurrentView(
    const std::string& name) {
  std::shared_ptr<Segment> seg;
  {
    absl::MutexLock lock(&seg_mu_);
    auto it = segment_ids_.find(name);
    if (it == segment_ids_.end()) return nullptr;
    seg = segments_[it->second];
  }
  absl::MutexLock lock(&seg->mu);
  return seg->view;
}

absl::StatusOr<RouteKind> TransferEngine::RouteTo(SegmentId id) {
  std::shared_ptr<Segment> seg = GetSegment(id);
  if (seg == nullptr) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("unknown segment id ", id));
  }
  absl::StatusOr<std::shared_ptr<const SegmentView>> view = View(seg.get());
  if (!view.ok()) return view.status();
  return (*view)->kind;
}

bool TransferEngine::SameHost(const std::string& segment) {
  if (segment == segment_name_) return true;
  absl::StatusOr<SegmentId> id = OpenSegment(segment);
  if (!id.ok()) return false;
  std::shared_ptr<Segment> seg = GetSegment(*id);
  if (seg == nullptr) return false;
  absl::StatusOr<std::shared_ptr<const SegmentView>> view = View(seg.get());
  return view.ok() && ((*view)->self || (*view)->desc->host_id == host_id_);
}

absl::StatusOr<std::shared_ptr<const TransferEngine::SegmentView>> TransferEngine::View(
    Segment* seg) {
  std::shared_ptr<const SegmentView> view;
  {
    absl::MutexLock lock(&seg->mu);
    if (seg->view != nullptr && !seg->stale) return seg->view;
    view = seg->view;
  }
  return Refresh(seg, view);
}

absl::StatusOr<std::shared_ptr<const TransferEngine::SegmentView>> TransferEngine::Refresh(
    Segment* seg, const std::shared_ptr<const SegmentView>& seen) {
  // One refresh of this segment at a time; the others wait for its result instead of each paying
  // a connect timeout.
  absl::MutexLock refresh(&seg->refresh_mu);
  std::shared_ptr<const SegmentView> previous;
  {
    absl::MutexLock lock(&seg->mu);
    if (seg->view != seen && seg->view != nullptr && !seg->stale) return seg->view;
    if (clock_->NowNanos() < seg->failed_until_ns) return seg->failure;
    previous = seg->view;
  }
  std::shared_ptr<const SegmentView> fresh;
  if (seg->name == segment_name_ && options_.allow_local_memcpy) {
    auto view = std::make_shared<SegmentView>();
    view->self = true;
    view->kind = RouteKind::kLocal;
    view->routes.push_back(std::make_shared<LocalRoute>());
    fresh = std::move(view);
  } else {
    absl::StatusOr<SegmentDescriptor> desc = FetchDescriptor(seg->name);
    if (!desc.ok()) {
      absl::MutexLock lock(&seg->mu);
      seg->failure = desc.status();
      seg->failed_until_ns =
          clock_->NowNanos() + absl::ToInt64Nanoseconds(options_.reconnect_backoff);
      return desc.status();
    }
    fresh = BuildView(seg->name, std::move(*desc), previous.get());
  }
  absl::MutexLock lock(&seg->mu);
  seg->view = fresh;
  seg->stale = false;
  seg->failed_until_ns = 0;
  return fresh;
}

std::shared_ptr<const TransferEngine::SegmentView> TransferEngine::BuildView(
    const std::string& name, SegmentDescriptor desc, const SegmentView* previous) {
  auto view = std::make_shared<SegmentView>();
  std::shared_ptr<Route> shm;
  bool any_shared = false;
  for (const BufferDesc& b : desc.buffers) any_shared |= b.shm;
  if (options_.allow_shm && shm_exporter_ != nullptr && desc.host_id == host_id_ &&
      !desc.shm_socket.empty() && any_shared) {
    absl::StatusOr<std::unique_ptr<ShmPeer>> peer =
        ShmPeer::Connect(desc.shm_socket, options_.auth_token);
    if (peer.ok()) {
      // Read the generation, then the descriptor again: a change after this read bumps it.
      const uint64_t generation = (*peer)->Generation();
      absl::StatusOr<SegmentDescriptor> fresh = FetchDescriptor(name);
      if (fresh.ok()) desc = std::move(*fresh);
      view->desc = std::make_shared<const SegmentDescriptor>(desc);
      shm = std::make_shared<ShmRoute>(std::shared_ptr<ShmPeer>(std::move(*peer)), view->desc,
                                       generation);
    } else {
      MC_LOG(WARNING) << "segment " << name << ": shared memory unavailable: " << peer.status();
    }
  }
  if (view->desc == nullptr) view->desc = std::make_shared<const SegmentDescriptor>(desc);
  if (shm != nullptr) view->routes.push_back(std::move(shm));
  if (rdma_ != nullptr && desc.protocol == "rdma" && !desc.devices.empty()) {
    view->routes.push_back(std::make_shared<RdmaRoute>(rdma_.get(), view->desc, seams_.wake));
  }
  if (options_.allow_tcp && !desc.tcp_host.empty() && desc.tcp_port != 0) {
    // Keep the lanes of an unchanged address: the TcpPeer reconnects its own lanes.
    std::shared_ptr<TcpPeer> tcp = previous != nullptr ? previous->tcp_peer() : nullptr;
    if (tcp == nullptr || tcp->host() != desc.tcp_host || tcp->port() != desc.tcp_port) {
      TcpPeerOptions o;
      o.lanes = options_.tcp_lanes;
      o.slice_size = options_.tcp_slice_size;
      o.connect_timeout = options_.connect_timeout;
      o.reconnect_backoff = options_.reconnect_backoff;
      o.clock = clock_;
      o.auth_token = options_.auth_token;
      tcp = std::make_shared<TcpPeer>(name, desc.tcp_host, desc.tcp_port, o);
    }
    view->routes.push_back(std::make_shared<TcpRoute>(std::move(tcp)));
  }
  view->kind = view->routes.empty() ? RouteKind::kTcp : view->routes.front()->kind();
  return view;
}

void TransferEngine::WatchdogLoop() {
  int64_t next_maintain = 0;
  int64_t next_publish_check = RealClock::Get()->NowNanos() + 3'000'000'000;
  while (!stopping_.load()) {
    usleep(50 * 1000);
    CheckTcpTimeouts();
    const int64_t now = RealClock::Get()->NowNanos();
    if (now >= next_maintain) {
      Maintain();
      next_maintain = now + 1'000'000'000;
    }
    if (now >= next_publish_check) {
      EnsurePublished();  // a restarted metadata server gets our descriptor back within 3 s
      next_publish_check = now + 3'000'000'000;
    }
  }
}

void TransferEngine::CheckTcpTimeouts() {
  std::vector<std::shared_ptr<Segment>> segs;
  {
    absl::MutexLock lock(&seg_mu_);
    for (auto& [id, s] : segments_) segs.push_back(s);
  }
  for (auto& seg : segs) {
    std::shared_ptr<const SegmentView> view;
    {
      absl::MutexLock lock(&seg->mu);
      view = seg->view;
    }
    std::shared_ptr<TcpPeer> tcp = view != nullptr ? view->tcp_peer() : nullptr;
    if (tcp == nullptr) continue;
    tcp->CheckTimeouts(options_.transfer_timeout);  // never waits for a connecting peer
    if (tcp->TakeFailureFlag()) {
      absl::MutexLock lock(&seg->mu);
      seg->stale = true;
    }
  }
}

void TransferEngine::Maintain() {
  const int64_t now = clock_->NowNanos();
  const int64_t idle_ns = absl::ToInt64Nanoseconds(options_.segment_idle_timeout);
  std::vector<std::shared_ptr<Segment>> idle;
  {
    absl::MutexLock lock(&seg_mu_);
    for (auto& [id, s] : segments_) {
      if (now - s->last_used_ns.load(std::memory_order_relaxed) > idle_ns) idle.push_back(s);
    }
  }
  for (auto& seg : idle) {
    std::shared_ptr<const SegmentView> view;
    {
      absl::MutexLock lock(&seg->mu);
      view = seg->view;
    }
    // Only a quiet peer is forgotten: nothing of it may still be on its way.
    std::shared_ptr<TcpPeer> tcp = view != nullptr ? view->tcp_peer() : nullptr;
    if (tcp != nullptr && !tcp->Idle()) continue;
    if (rdma_ != nullptr && !rdma_->ForgetPeer(seg->name)) continue;
    absl::MutexLock lock(&seg_mu_);
    auto it = segment_ids_.find(seg->name);
    if (it != segment_ids_.end() && segments_[it->second] == seg) {
      segments_.erase(it->second);
      segment_ids_.erase(it);
    }
  }
  bool probe = false;
  {
    absl::MutexLock lock(&seg_mu_);
    if (rdma_ != nullptr && now >= next_probe_ns_) {
      next_probe_ns_ = now + absl::ToInt64Nanoseconds(options_.accepted_probe_interval);
      probe = true;
    }
  }
  if (probe) Schedule([this] { ProbeAcceptedPeers(); });
}

void TransferEngine::ProbeAcceptedPeers() {
  // A peer that connected rails to us and then died (or restarted under another name) leaves QPs
  // behind: nothing tells a responder that its requester is gone. Ask each peer's control port.
  for (const auto& [segment, instance] : rdma_->AcceptedPeers()) {
    absl::StatusOr<std::string> json = control_->GetDescriptor(segment);
    bool gone = false;
    if (!json.ok()) {
      gone = ToErrorCode(json.status()) == ErrorCode::SEGMENT_NOT_FOUND;
    } else if (absl::StatusOr<SegmentDescriptor> d = ParseSegmentDescriptor(*json); d.ok()) {
      gone = instance != 0 && d->instance != 0 && d->instance != instance;
    }
    if (gone) {
      MC_LOG(INFO) << "rdma: peer " << segment << " is gone; dropping the endpoints it connected";
      rdma_->DropAccepted(segment, instance);
    }
  }
}

}  // namespace mooncake
