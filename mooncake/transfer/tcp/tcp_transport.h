// The active side of the TCP transport: persistent, pooled connections ("lanes") to each peer.
//
// A TcpPeer holds `lanes` connections to one TcpDataServer. Requests are cut into slices of at most
// `slice_size` bytes and spread over the lanes. Each lane has a sender thread, which coalesces
// queued slices into one sendmsg (headers and payloads straight from the caller's memory), and a
// receiver thread, which reads responses in order and reads READ payloads straight into the
// caller's buffer. A lane opens with a HELLO frame carrying a random token, the name by which the
// server can be asked to fence the connection.
//
// Failure: when a lane breaks (peer killed, reset, timeout) every slice queued or in flight on it
// fails once with TRANSFER_FAIL, and the next Send reconnects (no lock other peers or the watchdog
// need is held while connecting; after a failed connect the peer fails fast for reconnect_backoff).
// A WRITE slice fails only once no byte of it can land later: either the server answered, or it was
// never sent, or the server confirmed it fenced the connection (a FENCE control call on a fresh
// connection), or the server process is gone (connection refused). When none of that can be told
// (the peer is unreachable) the failure is marked unsettled (IsUnsettledWrite): its bytes may still
// land, and the caller must not hand the space to anyone else yet. See docs/architecture.md.
#ifndef MOONCAKE_TRANSFER_TCP_TCP_TRANSPORT_H_
#define MOONCAKE_TRANSFER_TCP_TCP_TRANSPORT_H_

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
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
#include "mooncake/transfer/tcp/tcp_frame.h"
#include "mooncake/transfer/transfer_batch.h"

namespace mooncake {

// TcpSlice is one frame's worth of a request.
struct TcpSlice {
  std::shared_ptr<TransferBatch> batch;
  size_t request = 0;  // index in batch
  bool is_write = false;
  char* local = nullptr;
  uint64_t remote_addr = 0;
  uint64_t length = 0;
};

struct TcpPeerOptions {
  int lanes = 2;
  uint64_t slice_size = 1 << 20;
  absl::Duration connect_timeout = absl::Seconds(3);
  absl::Duration reconnect_backoff = absl::Milliseconds(500);
  Clock* clock = nullptr;  // timeouts and backoff; nullptr: RealClock
  std::string auth_token;  // presented on every connection (MC_AUTH_TOKEN); "" = none
};

class TcpLane {
 public:
  // Connect opens the connection, sends HELLO and starts the lane's threads.
  static absl::StatusOr<std::unique_ptr<TcpLane>> Connect(const std::string& peer_name,
                                                          const std::string& host, int port,
                                                          const TcpPeerOptions& options);
  ~TcpLane();

  // Enqueue hands slices to the sender. On a broken lane they fail at once.
  void Enqueue(std::vector<TcpSlice> slices);
  bool broken() const;
  // Abort breaks the connection; everything queued or in flight fails with `reason`.
  void Abort(const absl::Status& reason);
  // OldestInflightNanos is the send time of the oldest unanswered slice, or 0 if none.
  int64_t OldestInflightNanos() const;
  bool idle() const;
  uint64_t token() const { return token_; }

 private:
  struct Inflight {
    TcpSlice slice;
    uint64_t id;
    int64_t sent_nanos;
  };
  TcpLane(std::string peer_name, std::string host, int port, int fd, uint64_t token,
          const TcpPeerOptions& options);
  void SendLoop();
  void RecvLoop();
  // TakeLocked moves `direct` (or, if null, up to a sendmsg's worth of queue_) into inflight_ and
  // builds the frames' iovecs; `headers` must outlive the send.
  void TakeLocked(std::vector<TcpSlice>* direct, std::vector<FrameHeader>* headers,
                  std::vector<struct iovec>* iov) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendFramesLocked(std::vector<struct iovec>* iov) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_);
  absl::Status ReceiveOne();
  // FailAll fails every slice left once the receiver stopped; unanswered writes are settled first
  // (see the file comment).
  void FailAll();
  // Settle asks the server to fence this connection; true once no byte of it can land any more.
  bool Settle();

  const std::string peer_name_;
  const std::string host_;
  const int port_;
  const int fd_;
  const uint64_t token_;
  const TcpPeerOptions options_;
  Clock* const clock_;
  // Held while frames are taken into inflight_ and written, so wire order = inflight_ order.
  // Acquired before mu_.
  absl::Mutex send_mu_;
  mutable absl::Mutex mu_;
  std::deque<TcpSlice> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Inflight> inflight_ ABSL_GUARDED_BY(mu_);  // in send order = response order
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool drained_ ABSL_GUARDED_BY(mu_) = false;  // RecvLoop failed everything and exited
  absl::Status broken_reason_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::thread sender_;
  std::thread receiver_;
};

class TcpPeer {
 public:
  TcpPeer(std::string name, std::string host, int port, TcpPeerOptions options);
  ~TcpPeer();

  // Slice cuts request `request` of `batch` into frames appended to *out and announces them to
  // the batch. Send them with Send.
  void Slice(const std::shared_ptr<TransferBatch>& batch, size_t request, bool is_write,
             char* local, uint64_t remote_addr, uint64_t length, std::vector<TcpSlice>* out) const;
  // Send hands slices to the lanes, connecting missing ones first; if none can be connected the
  // slices fail with the reason.
  void Send(std::vector<TcpSlice> slices);
  // CheckTimeouts aborts lanes whose oldest slice has waited longer than `timeout`.
  void CheckTimeouts(absl::Duration timeout);
  // TakeFailureFlag is true once any lane broke since the last call (the engine re-resolves the
  // peer).
  bool TakeFailureFlag();
  // Idle is true when no lane has a slice queued or in flight.
  bool Idle() const;
  const std::string& name() const { return name_; }
  const std::string& host() const { return host_; }
  int port() const { return port_; }

 private:
  // Lanes returns the healthy lanes, connecting missing ones first (outside mu_, one connecting
  // thread at a time); *why is set when there is none.
  std::vector<std::shared_ptr<TcpLane>> Lanes(absl::Status* why);

  const std::string name_;
  const std::string host_;
  const int port_;
  const TcpPeerOptions options_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<TcpLane>> lanes_ ABSL_GUARDED_BY(mu_);
  bool connecting_ ABSL_GUARDED_BY(mu_) = false;
  int64_t failed_until_ns_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  bool failure_flag_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> next_lane_{0};
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TCP_TCP_TRANSPORT_H_
