// The active side of the TCP transport: persistent, pooled connections ("lanes") to each peer.
//
// A TcpPeer holds `lanes` connections to one TcpDataServer. Requests are cut into slices of at most
// `slice_size` bytes and spread over the lanes. Each lane has a sender thread, which coalesces
// queued slices into one sendmsg (headers and payloads straight from the caller's memory), and a
// receiver thread, which reads responses in order and reads READ payloads straight into the
// caller's buffer.
//
// Failure: when a lane's connection breaks (peer killed, reset, timeout) every slice queued or in
// flight on it fails once with TRANSFER_FAIL, and the next Submit reconnects. Other peers are not
// affected.
#ifndef MOONCAKE_TRANSFER_TCP_TCP_TRANSPORT_H_
#define MOONCAKE_TRANSFER_TCP_TCP_TRANSPORT_H_

#include <sys/uio.h>

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

class TcpLane {
 public:
  // Connect opens the connection and starts the lane's threads.
  static absl::StatusOr<std::unique_ptr<TcpLane>> Connect(const std::string& peer_name,
                                                          const std::string& host, int port,
                                                          absl::Duration timeout);
  ~TcpLane();

  // Enqueue hands slices to the sender. On a broken lane they fail at once.
  void Enqueue(std::vector<TcpSlice> slices);
  bool broken() const;
  // Abort breaks the connection; everything queued or in flight fails with `reason`.
  void Abort(const absl::Status& reason);
  // OldestInflightNanos is the send time of the oldest unanswered slice, or 0 if none (RealClock).
  int64_t OldestInflightNanos() const;

 private:
  struct Inflight {
    TcpSlice slice;
    uint64_t id;
    int64_t sent_nanos;
  };
  TcpLane(std::string peer_name, int fd);
  void SendLoop();
  void RecvLoop();
  // TakeLocked moves `direct` (or, if null, up to a sendmsg's worth of queue_) into inflight_ and
  // builds the frames' iovecs; `headers` must outlive the send.
  void TakeLocked(std::vector<TcpSlice>* direct, std::vector<FrameHeader>* headers,
                  std::vector<struct iovec>* iov) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendFramesLocked(std::vector<struct iovec>* iov) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_);
  absl::Status ReceiveOne();
  void FailAll(const absl::Status& reason);

  const std::string peer_name_;
  const int fd_;
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

struct TcpPeerOptions {
  int lanes = 2;
  uint64_t slice_size = 1 << 20;
  absl::Duration connect_timeout = absl::Seconds(3);
};

class TcpPeer {
 public:
  TcpPeer(std::string name, std::string host, int port, TcpPeerOptions options);

  // Submit slices request `request` of `batch` and queues it; failures are reported through batch.
  void Submit(const std::shared_ptr<TransferBatch>& batch, size_t request, bool is_write,
              char* local, uint64_t remote_addr, uint64_t length);
  // Flush hands everything submitted since the last Flush to the lanes.
  void Flush();
  // CheckTimeouts aborts lanes whose oldest slice has waited longer than `timeout`.
  void CheckTimeouts(absl::Duration timeout);
  // HadFailure is true once any lane broke since the last call (the engine re-resolves the peer).
  bool TakeFailureFlag();
  const std::string& name() const { return name_; }
  const std::string& host() const { return host_; }
  int port() const { return port_; }

 private:
  // EnsureLanes reconnects broken lanes; returns the error if none can be connected.
  absl::Status EnsureLanesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string name_;
  const std::string host_;
  const int port_;
  const TcpPeerOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<TcpLane>> lanes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<TcpSlice>> pending_ ABSL_GUARDED_BY(mu_);  // per lane, until Flush
  size_t next_lane_ ABSL_GUARDED_BY(mu_) = 0;
  bool failure_flag_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TCP_TCP_TRANSPORT_H_
