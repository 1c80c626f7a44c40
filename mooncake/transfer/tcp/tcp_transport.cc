#include "mooncake/transfer/tcp/tcp_transport.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/socket_util.h"

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

}  // namespace

absl::StatusOr<std::unique_ptr<TcpLane>> TcpLane::Connect(const std::string& peer_name,
                                                          const std::string& host, int port,
                                                          absl::Duration timeout) {
  absl::StatusOr<int> fd = ConnectTcp(host, port, timeout);
  if (!fd.ok()) return TransferFail(peer_name, fd.status().message());
  std::unique_ptr<TcpLane> lane(new TcpLane(peer_name, *fd));
  lane->sender_ = std::thread([l = lane.get()] { l->SendLoop(); });
  lane->receiver_ = std::thread([l = lane.get()] { l->RecvLoop(); });
  return lane;
}

TcpLane::TcpLane(std::string peer_name, int fd) : peer_name_(std::move(peer_name)), fd_(fd) {}

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

void TcpLane::Abort(const absl::Status& reason) {
  absl::MutexLock lock(&mu_);
  if (broken_) return;
  broken_ = true;
  broken_reason_ = reason;
  // Wakes both threads: the receiver sees EOF/error, the sender sees broken_.
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
  const int64_t now = RealClock::Get()->NowNanos();
  auto take = [&](TcpSlice& s) {
    FrameHeader h;
    h.op = s.is_write ? FrameOp::kWrite : FrameOp::kRead;
    h.request_id = next_id_++;
    h.addr = s.remote_addr;
    h.length = s.length;
    headers->push_back(h);
    // Recorded before sending: the response may arrive before sendmsg returns.
    inflight_.push_back({std::move(s), h.request_id, now});
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
    if (h.length > FrameHeader::kMaxControlPayload) return absl::DataLossError("oversized error");
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
  FailAll(error);
}

void TcpLane::FailAll(const absl::Status&) {
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
  for (Inflight& f : inflight) f.slice.batch->SliceDone(f.slice.request, reason);
  for (TcpSlice& s : queued) s.batch->SliceDone(s.request, reason);
}

TcpPeer::TcpPeer(std::string name, std::string host, int port, TcpPeerOptions options)
    : name_(std::move(name)), host_(std::move(host)), port_(port), options_(options) {}

absl::Status TcpPeer::EnsureLanesLocked() {
  if (lanes_.size() != static_cast<size_t>(options_.lanes)) {
    lanes_.resize(options_.lanes);
    pending_.resize(options_.lanes);
  }
  absl::Status last;
  size_t healthy = 0;
  for (auto& lane : lanes_) {
    if (lane != nullptr && !lane->broken()) {
      ++healthy;
      continue;
    }
    if (lane != nullptr) failure_flag_ = true;
    lane.reset();  // joins the old lane's threads; its slices have already failed
    absl::StatusOr<std::unique_ptr<TcpLane>> fresh =
        TcpLane::Connect(name_, host_, port_, options_.connect_timeout);
    if (!fresh.ok()) {
      last = fresh.status();
      failure_flag_ = true;
      break;  // the peer is unreachable; do not wait once per lane
    }
    lane = std::move(*fresh);
    ++healthy;
  }
  return healthy > 0 ? absl::OkStatus() : last;
}

void TcpPeer::Submit(const std::shared_ptr<TransferBatch>& batch, size_t request, bool is_write,
                     char* local, uint64_t remote_addr, uint64_t length) {
  absl::MutexLock lock(&mu_);
  absl::Status s = EnsureLanesLocked();
  if (!s.ok()) {
    batch->Finish(request, s);
    return;
  }
  const uint64_t slice = std::min<uint64_t>(options_.slice_size, FrameHeader::kMaxPayload);
  int count = static_cast<int>((length + slice - 1) / slice);
  batch->AddSlices(request, count);
  for (uint64_t off = 0; off < length; off += slice) {
    // Next healthy lane, round robin.
    size_t lane = next_lane_;
    for (size_t tries = 0; tries < lanes_.size(); ++tries) {
      lane = (next_lane_ + tries) % lanes_.size();
      if (lanes_[lane] != nullptr) break;
    }
    next_lane_ = (lane + 1) % lanes_.size();
    pending_[lane].push_back(
        {batch, request, is_write, local + off, remote_addr + off, std::min(slice, length - off)});
  }
}

void TcpPeer::Flush() {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < pending_.size(); ++i) {
    if (pending_[i].empty()) continue;
    lanes_[i]->Enqueue(std::move(pending_[i]));
    pending_[i].clear();
  }
}

void TcpPeer::CheckTimeouts(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  int64_t now = RealClock::Get()->NowNanos();
  for (auto& lane : lanes_) {
    if (lane == nullptr) continue;
    int64_t oldest = lane->OldestInflightNanos();
    if (oldest != 0 && now - oldest > absl::ToInt64Nanoseconds(timeout)) {
      lane->Abort(TransferFail(
          name_, absl::StrCat("no response for ", absl::FormatDuration(timeout), " (timed out)")));
      failure_flag_ = true;
    }
  }
}

bool TcpPeer::TakeFailureFlag() {
  absl::MutexLock lock(&mu_);
  bool any = failure_flag_;
  for (auto& lane : lanes_) any |= (lane != nullptr && lane->broken());
  failure_flag_ = false;
  return any;
}

}  // namespace mooncake
