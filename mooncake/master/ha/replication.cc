#include "mooncake/master/ha/replication.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/socket_util.h"

namespace mooncake::ha {
namespace {

// Records a link may hold unsent before it counts as failed (a standby that stopped reading).
constexpr int kMaxPendingOps = 1 << 20;
// Objects per snapshot frame.
constexpr size_t kSnapshotPartObjects = 4096;

}  // namespace

absl::Status WriteFrame(int fd, const google::protobuf::Message& message) {
  std::string body;
  if (!message.SerializeToString(&body) || body.size() > kMaxFrameBytes) {
    return MakeError(ErrorCode::INTERNAL_ERROR, "replication frame too large");
  }
  uint8_t header[4];
  const uint32_t n = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) header[i] = static_cast<uint8_t>(n >> (8 * i));
  struct iovec iov[2] = {{header, 4}, {body.data(), body.size()}};
  return SendAll(fd, iov, 2);
}

absl::Status ReadFrame(int fd, google::protobuf::Message* message, uint32_t max_bytes,
                       absl::Time deadline) {
  uint8_t header[4];
  if (absl::Status s = RecvAllBy(fd, header, 4, deadline); !s.ok()) return s;
  const uint32_t n = header[0] | header[1] << 8 | header[2] << 16 | uint32_t{header[3]} << 24;
  if (n > max_bytes) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("replication frame of ", n, " bytes"));
  }
  std::string body(n, '\0');
  if (absl::Status s = RecvAllBy(fd, body.data(), n, deadline); !s.ok()) return s;
  if (!message->ParseFromString(body)) {
    return MakeError(ErrorCode::INVALID_PARAMS, "malformed replication frame");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Leader side

struct ReplicationLog::Link {
  std::string id;
  int fd = -1;
  LinkState state = LinkState::kCatchingUp;
  bool failed = false;
  bool stop = false;
  bool snapshot_acked = false;
  uint64_t snapshot_seq = 0;
  uint64_t join_seq = 0;
  uint64_t acked = 0;
  uint64_t last_seq = 0;    // last record given to this link
  int64_t progress_ns = 0;  // when it last had nothing outstanding or acked something
  bool snapshot_sent = false;
  proto::ha::OpBatch pending;
  // Serializes writes of record batches (the sender thread and waiters that flush themselves).
  absl::Mutex send_mu;
  std::thread sender;
  std::thread acker;

  ~Link() {
    if (fd >= 0) ::close(fd);
  }
};

void ReplicationLog::Flush(Link* link) {
  absl::MutexLock send(&link->send_mu);
  proto::ha::ToStandby frame;
  {
    absl::MutexLock lock(&mu_);
    if (!link->snapshot_sent || link->stop || link->failed || link->pending.ops_size() == 0) {
      return;
    }
    frame.mutable_ops()->Swap(&link->pending);
  }
  if (absl::Status s = WriteFrame(link->fd, frame); !s.ok()) {
    absl::MutexLock lock(&mu_);
    if (!link->stop && !link->failed) {
      MC_LOG(WARNING) << "replication to standby " << link->id << " failed: " << s;
    }
    link->failed = true;
  }
}

ReplicationLog::ReplicationLog(Clock* clock) : clock_(clock) {}

ReplicationLog::~ReplicationLog() { Close(); }

void ReplicationLog::AppendLocked(proto::ha::Op* op) {
  const uint64_t seq = tail_.load(std::memory_order_relaxed) + 1;
  tail_.store(seq, std::memory_order_release);
  Link* last = nullptr;  // gets the record itself; the others a copy
  for (const std::shared_ptr<Link>& link : links_) {
    if (!link->failed) last = link.get();
  }
  for (const std::shared_ptr<Link>& link : links_) {
    if (link->failed) continue;
    if (link->pending.ops_size() >= kMaxPendingOps) {
      MC_LOG(WARNING) << "standby " << link->id << " is not keeping up; dropping its link";
      link->failed = true;
      link->pending.Clear();
      continue;
    }
    if (link->pending.ops_size() == 0) link->pending.set_first_seq(seq);
    if (link->acked == link->last_seq) link->progress_ns = clock_->NowNanos();
    link->last_seq = seq;
    if (link.get() == last) {
      link->pending.add_ops()->Swap(op);
    } else {
      *link->pending.add_ops() = *op;
    }
  }
}

void ReplicationLog::Append(proto::ha::Op* op) {
  absl::MutexLock lock(&mu_);
  AppendLocked(op);
}

void ReplicationLog::AddLink(const std::string& standby_id, int fd, const proto::ha::Hello& hello,
                             MasterService* service) {
  auto link = std::make_shared<Link>();
  Link* raw = link.get();
  raw->id = standby_id;
  raw->fd = fd;
  // The cut: no record can be appended while the snapshot is taken, so the link gets exactly
  // the records after it.
  MasterSnapshot snapshot = service->Snapshot([&] {
    absl::MutexLock lock(&mu_);
    raw->snapshot_seq = tail_.load();
    raw->acked = 0;
    raw->last_seq = raw->snapshot_seq;
    raw->progress_ns = clock_->NowNanos();
    if (closed_) raw->failed = true;
    links_.push_back(std::move(link));
  });
  raw->sender = std::thread(&ReplicationLog::SendLoop, this, raw, std::move(snapshot), hello);
  raw->acker = std::thread(&ReplicationLog::AckLoop, this, raw);
}

void ReplicationLog::SendLoop(Link* link, MasterSnapshot snapshot, proto::ha::Hello hello) {
  auto fail = [&](const absl::Status& s) {
    absl::MutexLock lock(&mu_);
    if (!link->stop && !link->failed) {
      MC_LOG(WARNING) << "replication to standby " << link->id << " failed: " << s;
    }
    link->failed = true;
  };
  proto::ha::ToStandby frame;
  *frame.mutable_hello() = hello;
  if (absl::Status s = WriteFrame(link->fd, frame); !s.ok()) return fail(s);
  // The snapshot, in parts.
  size_t next_object = 0;
  bool first = true;
  while (first || next_object < snapshot.objects.size()) {
    frame.Clear();
    proto::ha::SnapshotPart* part = frame.mutable_snapshot();
    if (first) {
      for (const MasterSnapshot::Segment& s : snapshot.segments) {
        SegmentToProto(s.id, s.owner, s.desc, part->add_segments());
      }
      for (const MasterSnapshot::Reservation& r : snapshot.reservations) {
        ReservationToProto(r, part->add_reservations());
      }
      first = false;
    }
    const size_t end = std::min(snapshot.objects.size(), next_object + kSnapshotPartObjects);
    for (; next_object < end; ++next_object) {
      const MasterSnapshot::Object& o = snapshot.objects[next_object];
      ObjectToProto(o.key, o.put_id, o.size, o.flags, o.replicas, part->add_objects());
    }
    if (next_object == snapshot.objects.size()) {
      part->set_last(true);
      part->set_seq(link->snapshot_seq);
    }
    if (absl::Status s = WriteFrame(link->fd, frame); !s.ok()) return fail(s);
  }
  snapshot = MasterSnapshot();
  {
    absl::MutexLock lock(&mu_);
    link->snapshot_sent = true;
  }
  // Then the records. A change a client waits for is sent by the waiter itself (WaitDurable);
  // this thread only sweeps up the rest (Tick's evictions and expiries) every kSweep, and is not
  // woken per record: a wake-up per record would cost the hot path more than it saves.
  constexpr absl::Duration kSweep = absl::Milliseconds(2);
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](Link* l) { return l->stop || l->failed; }, link),
                           kSweep);
      if (link->stop || link->failed) return;
    }
    Flush(link);
  }
}

void ReplicationLog::AckLoop(Link* link) {
  for (;;) {
    proto::ha::ToLeader ack;
    absl::Status s = ReadFrame(link->fd, &ack);
    absl::MutexLock lock(&mu_);
    if (!s.ok() || !ack.refused().empty()) {
      if (!link->stop && !link->failed) {
        MC_LOG(WARNING) << "standby " << link->id
                        << " link closed: " << (s.ok() ? ack.refused() : std::string(s.message()));
      }
      link->failed = true;
      return;
    }
    if (ack.acked_seq() >= link->acked && ack.acked_seq() <= link->last_seq &&
        ack.snapshot_applied()) {
      link->snapshot_acked = true;
      link->acked = ack.acked_seq();
      link->progress_ns = clock_->NowNanos();
    }
  }
}

uint64_t ReplicationLog::Join(const std::string& standby_id) {
  absl::MutexLock lock(&mu_);
  for (const std::shared_ptr<Link>& link : links_) {
    if (link->id == standby_id && link->state == LinkState::kCatchingUp) {
      link->state = LinkState::kJoining;
      link->join_seq = tail_.load();
      return link->join_seq;
    }
  }
  return 0;
}

void ReplicationLog::MarkInSync(const std::string& standby_id) {
  absl::MutexLock lock(&mu_);
  for (const std::shared_ptr<Link>& link : links_) {
    if (link->id == standby_id) link->state = LinkState::kInSync;
  }
}

void ReplicationLog::CloseLink(std::shared_ptr<Link> link) {
  ::shutdown(link->fd, SHUT_RDWR);  // the fd itself closes with the last reference
  if (link->sender.joinable()) link->sender.join();
  if (link->acker.joinable()) link->acker.join();
}

void ReplicationLog::RemoveLink(const std::string& standby_id) {
  std::vector<std::shared_ptr<Link>> gone;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = links_.begin(); it != links_.end();) {
      if ((*it)->id == standby_id) {
        (*it)->stop = true;
        gone.push_back(std::move(*it));
        it = links_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& link : gone) CloseLink(std::move(link));
}

std::vector<LinkStatus> ReplicationLog::Links() const {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowNanos();
  std::vector<LinkStatus> out;
  for (const std::shared_ptr<Link>& link : links_) {
    LinkStatus s;
    s.standby_id = link->id;
    s.state = link->state;
    s.failed = link->failed;
    s.acked = link->acked;
    s.snapshot_acked = link->snapshot_acked;
    s.snapshot_seq = link->snapshot_seq;
    s.join_seq = link->join_seq;
    s.lag = link->acked < link->last_seq ? absl::Nanoseconds(now - link->progress_ns)
                                         : absl::ZeroDuration();
    out.push_back(s);
  }
  return out;
}

absl::Status ReplicationLog::WaitDurable(uint64_t seq, absl::Time deadline) {
  struct Args {
    ReplicationLog* log;
    uint64_t seq;
  } args{this, seq};
  auto durable = +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (a->log->closed_) return true;
    for (const std::shared_ptr<Link>& link : a->log->links_) {
      if (link->state != LinkState::kCatchingUp && link->acked < a->seq) return false;
    }
    return true;
  };
  // Send what is pending from this thread rather than wake the sender: a round trip less of
  // thread hand-offs on the hot path.
  std::vector<std::shared_ptr<Link>> to_flush;
  {
    absl::MutexLock lock(&mu_);
    for (const std::shared_ptr<Link>& link : links_) {
      if (link->state != LinkState::kCatchingUp && link->acked < seq &&
          link->pending.ops_size() > 0) {
        to_flush.push_back(link);
      }
    }
  }
  for (const std::shared_ptr<Link>& link : to_flush) Flush(link.get());
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithDeadline(absl::Condition(durable, &args), deadline)) {
    return MakeError(ErrorCode::RPC_TIMEOUT,
                     "the standby masters did not confirm the change in time");
  }
  if (closed_) {
    return MakeError(ErrorCode::UNAVAILABLE_IN_CURRENT_STATUS,
                     "this master stopped leading before the change was replicated");
  }
  return absl::OkStatus();
}

void ReplicationLog::Close() {
  std::vector<std::shared_ptr<Link>> gone;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (auto& link : links_) link->stop = true;
    gone.swap(links_);
  }
  for (auto& link : gone) CloseLink(std::move(link));
}

void ReplicationLog::Open() {
  absl::MutexLock lock(&mu_);
  closed_ = false;
}

// ---------------------------------------------------------------------------------------------
// Standby side

ReplicationReceiver::ReplicationReceiver(Clock* clock, AcceptFn accept)
    : clock_(clock), accept_(std::move(accept)), state_(clock) {}

ReplicationReceiver::~ReplicationReceiver() { Stop(); }

absl::Status ReplicationReceiver::Listen(const std::string& host, int port) {
  auto fd = ListenTcp(host, port, &port_);
  if (!fd.ok()) return fd.status();
  listen_fd_ = *fd;
  acceptor_ = std::thread(&ReplicationReceiver::AcceptLoop, this);
  return absl::OkStatus();
}

void ReplicationReceiver::AcceptLoop() {
  while (!stopping_.load()) {
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) {
      if (stopping_.load()) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      absl::SleepFor(absl::Milliseconds(10));
      continue;
    }
    proto::ha::ToStandby hello;
    // A connection that never says hello (or says it slowly) must not hold the acceptor.
    if (!ReadFrame(fd, &hello, kMaxHelloBytes, absl::Now() + absl::Seconds(2)).ok() ||
        !hello.has_hello() || !accept_(hello.hello())) {
      proto::ha::ToLeader refused;
      refused.set_refused("this master does not follow that leader");
      (void)WriteFrame(fd, refused);
      ::close(fd);
      continue;
    }
    // Acknowledgements are small and latency-bound: never hold one back for Nagle.
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    absl::MutexLock lock(&mu_);
    if (stream_fd_ >= 0) ::shutdown(stream_fd_, SHUT_RDWR);  // a newer stream replaces it
    stream_fd_ = fd;
    const uint64_t generation = ++generation_;
    state_.Reset();
    held_ = Held{hello.hello().leader_id(), hello.hello().term(), false, 0};
    MC_LOG(INFO) << "following leader " << held_.leader_id << " (term " << held_.term << ")";
    streams_.emplace_back(&ReplicationReceiver::Serve, this, fd, generation);
  }
}

void ReplicationReceiver::Serve(int fd, uint64_t generation) {
  bool snapshot_done = false;
  uint64_t applied = 0;
  for (;;) {
    proto::ha::ToStandby frame;
    absl::Status s = ReadFrame(fd, &frame);
    absl::MutexLock lock(&mu_);
    if (generation != generation_) break;  // replaced or taken over
    // A broken connection (the leader died) leaves what was applied valid.
    if (!s.ok()) break;
    {
      if (frame.has_snapshot() && !snapshot_done) {
        s = state_.ApplySnapshotPart(frame.snapshot());
        if (s.ok() && frame.snapshot().last()) {
          snapshot_done = true;
          applied = frame.snapshot().seq();
        }
      } else if (frame.has_ops() && snapshot_done) {
        if (frame.ops().first_seq() != applied + 1) {
          s = MakeError(ErrorCode::INTERNAL_ERROR, "replication records out of order");
        }
        for (int i = 0; s.ok() && i < frame.ops().ops_size(); ++i) {
          s = state_.ApplyOp(frame.ops().ops(i));
          if (s.ok()) ++applied;
        }
      } else {
        s = MakeError(ErrorCode::INTERNAL_ERROR, "unexpected replication frame");
      }
    }
    if (!s.ok()) {
      MC_LOG(WARNING) << "replication stream from " << held_.leader_id << " ended: " << s;
      held_.complete = false;  // whatever arrived since is unknown
      break;
    }
    held_.complete = snapshot_done;
    held_.applied = applied;
    if (snapshot_done) {
      proto::ha::ToLeader ack;
      ack.set_acked_seq(applied);
      ack.set_snapshot_applied(true);
      if (!WriteFrame(fd, ack).ok()) break;  // the stream is dead; what we hold stays valid
    }
  }
  absl::MutexLock lock(&mu_);
  if (stream_fd_ == fd) stream_fd_ = -1;
  ::close(fd);
}

ReplicationReceiver::Held ReplicationReceiver::held() const {
  absl::MutexLock lock(&mu_);
  return held_;
}

void ReplicationReceiver::Drop() {
  absl::MutexLock lock(&mu_);
  ++generation_;
  if (stream_fd_ >= 0) ::shutdown(stream_fd_, SHUT_RDWR);
}

MasterSnapshot ReplicationReceiver::TakeState() {
  absl::MutexLock lock(&mu_);
  ++generation_;
  if (stream_fd_ >= 0) ::shutdown(stream_fd_, SHUT_RDWR);
  MasterSnapshot out = state_.ToSnapshot();
  state_.Reset();
  held_ = Held{};
  return out;
}

void ReplicationReceiver::Stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> streams;
  {
    absl::MutexLock lock(&mu_);
    ++generation_;
    if (stream_fd_ >= 0) ::shutdown(stream_fd_, SHUT_RDWR);
    streams.swap(streams_);
  }
  for (std::thread& t : streams) t.join();
}

}  // namespace mooncake::ha
