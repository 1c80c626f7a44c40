#include "mooncake/transfer/tcp/tcp_data_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/transfer/tcp/socket_util.h"

namespace mooncake {
namespace {

// A peer that stops mid-frame for this long is dropped (an idle connection between frames is fine).
constexpr int kMidFrameTimeoutSeconds = 60;

// Reads a header. Returns false on EOF or error; a timeout with no byte read yet just waits again.
bool RecvHeader(int fd, FrameHeader* h, const std::atomic<bool>& stopping) {
  char* p = reinterpret_cast<char*>(h);
  size_t got = 0;
  while (got < sizeof(*h)) {
    ssize_t n = recv(fd, p + got, sizeof(*h) - got, 0);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && got == 0 && !stopping.load()) continue;
      return false;
    }
    got += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

TcpDataServer::TcpDataServer(const MemoryRegistry* registry, ControlFn control)
    : registry_(registry), control_(std::move(control)) {}

TcpDataServer::~TcpDataServer() { Stop(); }

absl::Status TcpDataServer::Start(const std::string& host, int port) {
  absl::StatusOr<int> fd = ListenTcp(host, port, &port_);
  if (!fd.ok()) return fd.status();
  listen_fd_ = *fd;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void TcpDataServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
  std::list<std::unique_ptr<Connection>> conns;
  {
    absl::MutexLock lock(&mu_);
    conns.swap(connections_);
  }
  for (auto& c : conns) shutdown(c->fd, SHUT_RDWR);
  for (auto& c : conns) {
    c->thread.join();
    close(c->fd);
  }
}

void TcpDataServer::ReapFinishedLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->finished.load()) {
      (*it)->thread.join();
      close((*it)->fd);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void TcpDataServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    int rc = poll(&p, 1, 500);
    if (stopping_.load()) break;
    {
      absl::MutexLock lock(&mu_);
      ReapFinishedLocked();
    }
    if (rc <= 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        MC_LOG(WARNING) << "tcp data server: out of file descriptors; retrying";
        usleep(10000);
        continue;
      }
      break;
    }
    absl::MutexLock lock(&mu_);
    if (connections_.size() >= static_cast<size_t>(kMaxConnections)) {
      MC_LOG(WARNING) << "tcp data server: refusing connection, " << kMaxConnections
                      << " already open";
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    timeval tv{kMidFrameTimeoutSeconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    auto conn = std::make_unique<Connection>();
    conn->fd = fd;
    Connection* raw = conn.get();
    connections_.push_back(std::move(conn));
    raw->thread = std::thread([this, raw] { Serve(raw); });
  }
}

void TcpDataServer::Serve(Connection* conn) {
  const int fd = conn->fd;
  FrameHeader h;
  while (!stopping_.load() && RecvHeader(fd, &h, stopping_)) {
    absl::Status valid = h.Validate();
    if (!valid.ok()) {
      MC_LOG(WARNING) << "tcp data server: closing connection after malformed frame: " << valid;
      break;
    }
    bool keep = false;
    switch (h.op) {
      case FrameOp::kWrite:
        keep = HandleWrite(fd, h);
        break;
      case FrameOp::kRead:
        keep = HandleRead(fd, h);
        break;
      case FrameOp::kGetDescriptor:
      case FrameOp::kRdmaHandshake:
        keep = HandleControl(fd, h);
        break;
      default:
        MC_LOG(WARNING) << "tcp data server: unexpected opcode " << static_cast<int>(h.op);
        break;
    }
    if (!keep) break;
  }
  shutdown(fd, SHUT_RDWR);
  conn->finished.store(true);
}

bool TcpDataServer::SendError(int fd, const FrameHeader& request, FrameOp op,
                              const absl::Status& status) {
  std::string message(status.message());
  if (message.size() > 4096) message.resize(4096);
  FrameHeader r;
  r.op = op;
  r.request_id = request.request_id;
  r.addr = request.addr;
  r.status = static_cast<int32_t>(ToErrorCode(status));
  r.length = message.size();
  iovec iov[2] = {{&r, sizeof(r)}, {message.data(), message.size()}};
  return SendAll(fd, iov, 2).ok();
}

bool TcpDataServer::HandleWrite(int fd, const FrameHeader& h) {
  bool connection_ok = true;
  absl::Status s = registry_->WithRange(
      h.addr, h.length, /*remote=*/true, [&](const RegisteredBuffer&) -> absl::Status {
        // Straight into the registered memory.
        absl::Status r = RecvAll(fd, reinterpret_cast<void*>(h.addr), h.length);
        connection_ok = r.ok();
        return r;
      });
  if (!connection_ok) return false;
  if (!s.ok()) {
    // Consume the payload so the stream stays in sync; none of it is applied.
    if (!DiscardBytes(fd, h.length).ok()) return false;
    return SendError(fd, h, FrameOp::kWriteAck, s);
  }
  FrameHeader ack;
  ack.op = FrameOp::kWriteAck;
  ack.request_id = h.request_id;
  ack.addr = h.addr;
  return SendAll(fd, &ack, sizeof(ack)).ok();
}

bool TcpDataServer::HandleRead(int fd, const FrameHeader& h) {
  bool connection_ok = true;
  absl::Status s = registry_->WithRange(
      h.addr, h.length, /*remote=*/true, [&](const RegisteredBuffer&) -> absl::Status {
        FrameHeader r;
        r.op = FrameOp::kReadData;
        r.request_id = h.request_id;
        r.addr = h.addr;
        r.length = h.length;
        // Header and payload in one sendmsg; the payload straight from registered memory.
        iovec iov[2] = {{&r, sizeof(r)}, {reinterpret_cast<void*>(h.addr), h.length}};
        absl::Status sent = SendAll(fd, iov, 2);
        connection_ok = sent.ok();
        return sent;
      });
  if (!connection_ok) return false;
  if (!s.ok()) return SendError(fd, h, FrameOp::kReadData, s);
  return true;
}

bool TcpDataServer::HandleControl(int fd, const FrameHeader& h) {
  std::string payload(h.length, '\0');
  if (!RecvAll(fd, payload.data(), payload.size()).ok()) return false;
  const FrameOp reply_op = static_cast<FrameOp>(static_cast<uint8_t>(h.op) | 0x80);
  absl::StatusOr<std::string> reply =
      control_ ? control_(h.op, payload) : absl::UnimplementedError("no control handler");
  if (!reply.ok()) return SendError(fd, h, reply_op, reply.status());
  FrameHeader r;
  r.op = reply_op;
  r.request_id = h.request_id;
  r.length = reply->size();
  iovec iov[2] = {{&r, sizeof(r)}, {reply->data(), reply->size()}};
  return SendAll(fd, iov, 2).ok();
}

}  // namespace mooncake
