#include "mooncake/transfer/tcp/tcp_transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/transfer/tcp/tcp_control.h"

namespace mooncake {
namespace {

// Frames coalesced into one sendmsg (each frame is a header iovec plus, for writes, a payload
// iovec).
constexpr size_t kMaxFramesPerSend = 256;
// Up to this many payload bytes the submitting thread sends itself when the lane is idle.
constexpr uint64_t kDirectSendBytes = 256 << 10;

absl::Status TransferFail(const std::string& peer, absl::string_view why) {
  return MakeError(ErrorCode::TRANSFER_FAIL, absl::StrCat("tcp peer ", peer, ": ", why));
}

uint64_t NewToken() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  uint64_t t = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ (counter.fetch_add(1) << 17);
  return t == 0 ? 1 : t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpLane>> TcpLane::Connect(const std::string& peer_name,
                                                          const std::string& host, int port,
                                                          const TcpPeerOptions& options) {
  absl::StatusOr<int> fd = ConnectTcp(host, port, options.connect_timeout);
  if (!fd.ok()) return TransferFail(peer_name, fd.status().message());
  const uint64_t token = NewToken();
  FrameHeader auth;
  std::vector<iovec> iov;
  AppendAuthFrame(options.auth_token, &auth, &iov);
  FrameHeader hello;
  hello.op = FrameOp::kHello;
  hello.length = sizeof(token);
  iov.push_back({&hello, sizeof(hello)});
  iov.push_back({const_cast<uint64_t*>(&token), sizeof(token)});
  if (absl::Status s = SendAll(*fd, iov.data(), static_cast<int>(iov.size())); !s.ok()) {
    close(*fd);
    return TransferFail(peer_name, s.message());
  }
  std::unique_ptr<TcpLane> lane(new TcpLane(peer_name, host, port, *fd, token, options));
  lane->sender_ = std::thread([l = lane.get()] { l->SendLoop(); });
  lane->receiver_ = std::thread([l = lane.get()] { l->RecvLoop(); });
  return lane;
}

TcpLane::TcpLane(std::string peer_name, std::string host, int port, int fd, uint64_t token,
                 const TcpPeerOptions& options)
    : peer_name_(std::move(peer_name)),
      host_(std::move(host)),
      port_(port),
      fd_(fd),
      token_(token),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock::Get()) {}

TcpLane::~TcpLane() {
  Abort(TransferFail(peer_name_, "connection closed by the local engine"));
  sender_.join();
  receiver_.join();
  close(fd_);
}

bool TcpLane::broken() const {
  absl::MutexLock lock(&mu_);
  return broken_;
}

bool TcpLane::idle() const {
  absl::MutexLock lock(&mu_);
  return queue_.empty() && inflight_.empty();
}

void TcpLane::Abort(const absl::Status& reason) {
  absl::MutexLock lock(&mu_);
  if (broken_) return;
  broken_ = true;
  broken_reason_ = reason;
  // Reset rather than close politely: the kernel drops what it has not sent yet instead of
  // delivering it later. Shutdown wakes both threads (the receiver sees EOF or an error, the
  // sender sees broken_).
  linger off{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
  shutdown(fd_, SHUT_RDWR);
}

int64_t TcpLane::OldestInflightNanos() const {
  absl::MutexLock lock(&mu_);
  return inflight_.empty() ? 0 : inflight_.front().sent_nanos;
}

void TcpLane::Enqueue(std::vector<TcpSlice> slices) {
  uint64_t bytes = 0;
  for (const TcpSlice& s : slices) bytes += s.is_write ? s.length : 0;
  // Small requests skip the sender thread when it is idle: one thread hop less per request.
  if (bytes <= kDirectSendBytes && slices.size() <= kMaxFramesPerSend && send_mu_.TryLock()) {
    std::vector<FrameHeader> headers;
    std::vector<iovec> iov;
    bool direct = false;
    absl::Status fail;
    {
      absl::MutexLock lock(&mu_);
      if (drained_) {
        fail = broken_reason_;
      } else if (queue_.empty() && !broken_) {
        direct = true;
        TakeLocked(&slices, &headers, &iov);
      } else {
        for (TcpSlice& s : slices) queue_.push_back(std::move(s));
      }
    }
    if (direct) SendFramesLocked(&iov);
    send_mu_.Unlock();
    if (!fail.ok()) {
      for (TcpSlice& s : slices) s.batch->SliceDone(s.request, fail);
    }
    return;
  }
  absl::Status fail;
  {
    absl::MutexLock lock(&mu_);
    if (!drained_) {
      for (TcpSlice& s : slices) queue_.push_back(std::move(s));
      return;
    }
    fail = broken_reason_;
  }
  for (TcpSlice& s : slices) s.batch->SliceDone(s.request, fail);
}

void TcpLane::TakeLocked(std::vector<TcpSlice>* direct, std::vector<FrameHeader>* headers,
                         std::vector<iovec>* iov) {
  const int64_t now = clock_->NowNanos();
  auto take = [&](TcpSlice& s) {
    FrameHeader h;
    h.op = s.is_write ? FrameOp::kWrite : FrameOp::kRead;
    h.request_id = next_id_++;
    h.addr = s.remote_addr;
    h.length = s.length;
    headers->push_back(h);
    // Recorded before sending: the response may arrive before sendmsg returns.
    inflight_.push_back({std::move(s), h.request_id, now == 0 ? 1 : now});
  };
  if (direct != nullptr) {
    for (TcpSlice& s : *direct) take(s);
  } else {
    while (!queue_.empty() && headers->size() < kMaxFramesPerSend) {
      take(queue_.front());
      queue_.pop_front();
    }
  }
  // iovecs: the headers (stable: reserved below) and the payloads, straight from caller memory.
  size_t first = inflight_.size() - headers->size();
  for (size_t i = 0; i < headers->size(); ++i) {
    iov->push_back({&(*headers)[i], sizeof(FrameHeader)});
    const TcpSlice& s = inflight_[first + i].slice;
    if (s.is_write) iov->push_back({s.local, s.length});
  }
}

void TcpLane::SendFramesLocked(std::vector<iovec>* iov) {
  absl::Status sent = SendAll(fd_, iov->data(), static_cast<int>(iov->size()));
  if (!sent.ok()) Abort(TransferFail(peer_name_, sent.message()));
}

void TcpLane::SendLoop() {
  std::vector<FrameHeader> headers;
  std::vector<iovec> iov;
  headers.reserve(kMaxFramesPerSend);
  iov.reserve(2 * kMaxFramesPerSend);
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return broken_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (broken_) return;
    }
    // send_mu_ before mu_: frames reach the wire in the order they enter inflight_.
    absl::MutexLock send_lock(&send_mu_);
    headers.clear();
    iov.clear();
    {
      absl::MutexLock lock(&mu_);
      if (broken_) return;
      TakeLocked(nullptr, &headers, &iov);
    }
    if (!iov.empty()) SendFramesLocked(&iov);
  }
}

absl::Status TcpLane::ReceiveOne() {
  FrameHeader h;
  absl::Status s = RecvAll(fd_, &h, sizeof(h));
  if (!s.ok()) return s;
  if (absl::Status v = h.Validate(); !v.ok()) return v;
  if (h.op == FrameOp::kAuthReply) {      // the peer refused our token and is closing
    std::string message(h.length, '\0');  // Validate: at most kMaxErrorPayload
    if (absl::Status r = RecvAll(fd_, message.data(), message.size()); !r.ok()) return r;
    return absl::PermissionDeniedError(message);
  }
  TcpSlice* slice = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (inflight_.empty() || inflight_.front().id != h.request_id) {
      return absl::DataLossError(absl::StrCat("unexpected response id ", h.request_id));
    }
    slice = &inflight_.front().slice;  // stays valid: only this thread pops inflight_
  }
  FrameOp expect = slice->is_write ? FrameOp::kWriteAck : FrameOp::kReadData;
  if (h.op != expect) return absl::DataLossError("response opcode does not match the request");
  absl::Status result;
  if (h.status != 0) {
    if (h.length > FrameHeader::kMaxErrorPayload) return absl::DataLossError("oversized error");
    std::string message(h.length, '\0');
    if (absl::Status r = RecvAll(fd_, message.data(), message.size()); !r.ok()) return r;
    auto code = ErrorCodeFromInt(h.status);
    result = MakeError(code.value_or(ErrorCode::TRANSFER_FAIL),
                       absl::StrCat("tcp peer ", peer_name_, ": ", message));
  } else if (!slice->is_write) {
    if (h.length != slice->length) return absl::DataLossError("read response has the wrong length");
    // Straight into the caller's buffer.
    if (absl::Status r = RecvAll(fd_, slice->local, slice->length); !r.ok()) return r;
  } else if (h.length != 0) {
    return absl::DataLossError("write ack carries a payload");
  }
  TcpSlice done;
  {
    absl::MutexLock lock(&mu_);
    done = std::move(inflight_.front().slice);
    inflight_.pop_front();
  }
  done.batch->SliceDone(done.request, result);
  return absl::OkStatus();
}

void TcpLane::RecvLoop() {
  absl::Status error;
  while (error.ok()) error = ReceiveOne();
  Abort(TransferFail(peer_name_, error.message()));
  FailAll();
}

bool TcpLane::Settle() {
  const std::string token(reinterpret_cast<const char*>(&token_), sizeof(token_));
  absl::StatusOr<std::string> fenced = ControlCall(host_, port_, FrameOp::kFence, token,
                                                   options_.connect_timeout, options_.auth_token);
  if (fenced.ok()) return true;
  // Nobody listens there: the server process is gone, and its memory with it.
  if (SocketErrno(fenced.status()) == ECONNREFUSED) return true;
  MC_LOG(WARNING) << "tcp peer " << peer_name_ << ": cannot fence a broken connection ("
                  << fenced.status() << "); its unanswered writes may still land";
  return false;
}

void TcpLane::FailAll() {
  std::deque<Inflight> inflight;
  std::deque<TcpSlice> queued;
  absl::Status reason;
  {
    absl::MutexLock lock(&mu_);
    // The sender has stopped sending (broken_), so nothing new enters inflight_ after this.
    inflight.swap(inflight_);
    queued.swap(queue_);
    drained_ = true;
    reason = broken_reason_;
  }
  bool unanswered_writes = false;
  for (const Inflight& f : inflight) unanswered_writes |= f.slice.is_write;
  absl::Status write_reason = reason;
  if (unanswered_writes && !Settle()) write_reason = MarkUnsettledWrite(reason);
  for (Inflight& f : inflight) {
    f.slice.batch->SliceDone(f.slice.request, f.slice.is_write ? write_reason : reason);
  }
  for (TcpSlice& s : queued) s.batch->SliceDone(s.request, reason);  // never sent
}

TcpPeer::TcpPeer(std::string name, std::string host, int port, TcpPeerOptions options)
    : name_(std::move(name)),
      host_(std::move(host)),
      port_(port),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock::Get()) {}

TcpPeer::~TcpPeer() = default;

std::vector<std::shared_ptr<TcpLane>> TcpPeer::Lanes(absl::Status* why) {
  std::vector<std::shared_ptr<TcpLane>> healthy;
  std::vector<std::shared_ptr<TcpLane>> dead;  // destroyed (threads joined) outside mu_
  {
    absl::MutexLock lock(&mu_);
    for (;;) {
      healthy.clear();
      for (auto& lane : lanes_) {
        if (lane->broken()) {
          dead.push_back(std::move(lane));
          failure_flag_ = true;
        } else {
          healthy.push_back(lane);
        }
      }
      lanes_ = healthy;
      if (healthy.size() >= static_cast<size_t>(options_.lanes)) break;
      if (connecting_) {
        if (!healthy.empty()) break;  // use what there is; another thread adds the rest
        // Wait for the other thread's attempt (bounded by its connect timeout).
        auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !connecting_; };
        mu_.AwaitWithTimeout(absl::Condition(&done), options_.connect_timeout + absl::Seconds(1));
        if (connecting_) {
          *why = TransferFail(name_, "connecting took too long");
          break;
        }
        continue;
      }
      if (clock_->NowNanos() < failed_until_ns_) {
        if (healthy.empty()) *why = failure_;
        break;
      }
      // Connect the missing lanes ourselves, without holding mu_ (others use the healthy lanes,
      // and the watchdog can still time them out).
      connecting_ = true;
      const int missing = options_.lanes - static_cast<int>(healthy.size());
      mu_.Unlock();
      std::vector<std::shared_ptr<TcpLane>> fresh;
      absl::Status failed;
      for (int i = 0; i < missing; ++i) {
        absl::StatusOr<std::unique_ptr<TcpLane>> lane =
            TcpLane::Connect(name_, host_, port_, options_);
        if (!lane.ok()) {
          failed = lane.status();
          break;  // the peer is unreachable; do not wait once per lane
        }
        fresh.push_back(std::move(*lane));
      }
      mu_.Lock();
      connecting_ = false;
      for (auto& lane : fresh) lanes_.push_back(std::move(lane));
      if (!failed.ok()) {
        failure_ = failed;
        failure_flag_ = true;
        failed_until_ns_ =
            clock_->NowNanos() + absl::ToInt64Nanoseconds(options_.reconnect_backoff);
        healthy = lanes_;
        if (healthy.empty()) *why = failed;
        break;
      }
    }
  }
  dead.clear();
  return healthy;
}

void TcpPeer::Slice(const std::shared_ptr<TransferBatch>& batch, size_t request, bool is_write,
                    char* local, uint64_t remote_addr, uint64_t length,
                    std::vector<TcpSlice>* out) const {
  const uint64_t slice = std::min<uint64_t>(options_.slice_size, FrameHeader::kMaxPayload);
  const int count = static_cast<int>((length + slice - 1) / slice);
  batch->AddSlices(request, count);
  for (uint64_t off = 0; off < length; off += slice) {
    out->push_back(
        {batch, request, is_write, local + off, remote_addr + off, std::min(slice, length - off)});
  }
}

void TcpPeer::Send(std::vector<TcpSlice> slices) {
  if (slices.empty()) return;
  absl::Status why;
  std::vector<std::shared_ptr<TcpLane>> lanes = Lanes(&why);
  if (lanes.empty()) {
    if (why.ok()) why = TransferFail(name_, "no connection");
    for (TcpSlice& s : slices) s.batch->SliceDone(s.request, why);
    return;
  }
  // Round robin over the healthy lanes, in submission order within each lane.
  std::vector<std::vector<TcpSlice>> per_lane(lanes.size());
  uint64_t next = next_lane_.fetch_add(slices.size());
  for (TcpSlice& s : slices) per_lane[next++ % lanes.size()].push_back(std::move(s));
  for (size_t i = 0; i < lanes.size(); ++i) {
    if (!per_lane[i].empty()) lanes[i]->Enqueue(std::move(per_lane[i]));
  }
}

void TcpPeer::CheckTimeouts(absl::Duration timeout) {
  std::vector<std::shared_ptr<TcpLane>> lanes;
  {
    absl::MutexLock lock(&mu_);
    lanes = lanes_;
  }
  const int64_t now = clock_->NowNanos();
  bool timed_out = false;
  for (auto& lane : lanes) {
    const int64_t oldest = lane->OldestInflightNanos();
    if (oldest != 0 && now - oldest > absl::ToInt64Nanoseconds(timeout)) {
      lane->Abort(TransferFail(
          name_, absl::StrCat("no response for ", absl::FormatDuration(timeout), " (timed out)")));
      timed_out = true;
    }
  }
  if (timed_out) {
    absl::MutexLock lock(&mu_);
    failure_flag_ = true;
  }
}

bool TcpPeer::TakeFailureFlag() {
  absl::MutexLock lock(&mu_);
  bool any = failure_flag_;
  for (auto& lane : lanes_) any |= lane->broken();
  failure_flag_ = false;
  return any;
}

bool TcpPeer::Idle() const {
  absl::MutexLock lock(&mu_);
  for (const auto& lane : lanes_) {
    if (!lane->idle()) return false;
  }
  return true;
}

}  // namespace mooncake
