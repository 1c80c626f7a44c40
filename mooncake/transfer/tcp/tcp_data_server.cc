#include "mooncake/transfer/tcp/tcp_data_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

// Tokens remembered for connections fenced before their HELLO was read.
constexpr size_t kMaxFencedTokens = 4096;

// Reads a header. Returns false on EOF or error; a timeout with no byte read yet just waits again.
bool RecvHeader(int fd, FrameHeader* h, const ConnectionServer& server) {
  char* p = reinterpret_cast<char*>(h);
  size_t got = 0;
  while (got < sizeof(*h)) {
    ssize_t n = recv(fd, p + got, sizeof(*h) - got, 0);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && got == 0 && !server.stopping()) continue;
      return false;
    }
    got += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

struct TcpDataServer::Connection {
  explicit Connection(int f) : fd(f) {}
  const int fd;
  uint64_t token = 0;  // from HELLO; 0 = none yet
  // Held while a WRITE payload is read into memory. Fencing sets `fenced` under it after shutting
  // the socket down (which ends a blocked read at once), so once a fence returns nothing more of
  // this connection is applied.
  absl::Mutex apply_mu;
  std::atomic<bool> fenced{false};
};

TcpDataServer::TcpDataServer(const MemoryRegistry* registry, ControlFn control,
                             TcpDataServerOptions options)
    : registry_(registry),
      control_(std::move(control)),
      options_(options),
      budget_(options.control_budget_bytes),
      server_(
          "tcp data server", options.max_connections, [this](int fd) { Serve(fd); },
          [timeout = options.mid_frame_timeout_seconds](int fd) {
            // Idle between frames is fine; a peer stalled mid-frame is dropped.
            timeval tv{timeout, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
            return true;
          }) {}

TcpDataServer::~TcpDataServer() { Stop(); }

absl::Status TcpDataServer::Start(const std::string& host, int port) {
  return server_.Start(host, port);
}

void TcpDataServer::SetFaultHookForTesting(FaultHook hook) {
  absl::MutexLock lock(&mu_);
  fault_hook_ = std::move(hook);
}

void TcpDataServer::Serve(int fd) {
  Connection conn(fd);
  {
    absl::MutexLock lock(&mu_);
    connections_.insert(&conn);
  }
  FrameHeader h;
  const bool authenticated = options_.auth_token.empty() || Authenticate(fd);
  while (authenticated && !server_.stopping() && !conn.fenced.load() &&
         RecvHeader(fd, &h, server_)) {
    absl::Status valid = h.Validate();
    if (!valid.ok()) {
      MC_LOG(WARNING) << "tcp data server: closing connection after malformed frame: " << valid;
      break;
    }
    bool keep = false;
    switch (h.op) {
      case FrameOp::kAuth:  // a token for a server that has none (or a repeat): ignored
        keep = DiscardBytes(fd, h.length).ok();
        break;
      case FrameOp::kWrite:
        keep = HandleWrite(&conn, h);
        break;
      case FrameOp::kRead:
        keep = HandleRead(fd, h);
        break;
      case FrameOp::kHello:
        keep = HandleHello(&conn);
        break;
      case FrameOp::kGetDescriptor:
      case FrameOp::kRdmaHandshake:
      case FrameOp::kService:
      case FrameOp::kFence:
        keep = HandleControl(fd, h);
        break;
      default:
        MC_LOG(WARNING) << "tcp data server: unexpected opcode " << static_cast<int>(h.op);
        break;
    }
    if (!keep) break;
  }
  absl::MutexLock lock(&mu_);
  connections_.erase(&conn);
  if (conn.token != 0) by_token_.erase(conn.token);
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

bool TcpDataServer::Authenticate(int fd) {
  // One frame, by a deadline: a peer without the token holds a slot for kAuthFrameTimeout at most
  // and has at most kMaxAuthTokenBytes of its payload read.
  const absl::Time deadline = absl::Now() + kAuthFrameTimeout;
  FrameHeader h;
  if (!RecvAllBy(fd, &h, sizeof(h), deadline).ok()) return false;
  if (absl::Status valid = h.Validate(); !valid.ok()) {
    MC_LOG(WARNING) << "tcp data server: closing connection after malformed frame: " << valid;
    return false;
  }
  if (h.op == FrameOp::kAuth) {
    std::string given(h.length, '\0');  // Validate: at most kMaxAuthTokenBytes
    if (!RecvAllBy(fd, given.data(), given.size(), deadline).ok()) return false;
    if (AuthTokenMatches(options_.auth_token, given)) return true;
  }
  // Any other request's payload is left unread: FinishRefusal drops it while the peer reads the
  // error, for a bounded time.
  auth_refusals_.fetch_add(1);
  MC_LOG(WARNING) << "tcp data server: refusing a connection without the right " << kAuthTokenEnv;
  // The request's own reply op, so the peer reports the refusal as that request's error.
  FrameOp reply = FrameOp::kAuthReply;
  if (h.op != FrameOp::kAuth && h.op != FrameOp::kHello) {
    reply = static_cast<FrameOp>(static_cast<uint8_t>(h.op) | 0x80);
  }
  if (SendError(fd, h, reply, AuthRefused("the tcp data server"))) FinishRefusal(fd);
  return false;
}

// FrameHeader::Validate has already checked that a HELLO carries exactly its 8-byte token.
bool TcpDataServer::HandleHello(Connection* conn) {
  uint64_t token = 0;
  if (!RecvAll(conn->fd, &token, sizeof(token)).ok() || token == 0 || conn->token != 0)
    return false;
  absl::MutexLock lock(&mu_);
  if (fenced_tokens_.count(token)) return false;  // its owner already gave up on it
  if (!by_token_.emplace(token, conn).second) return false;
  conn->token = token;
  return true;
}

bool TcpDataServer::HandleWrite(Connection* conn, const FrameHeader& h) {
  FaultHook hook;
  {
    absl::MutexLock lock(&mu_);
    hook = fault_hook_;
  }
  if (hook) hook(h);
  absl::StatusOr<MemoryRegistry::Pin> pin = registry_->PinRange(h.addr, h.length, /*remote=*/true);
  if (!pin.ok()) {
    // Consume the payload so the stream stays in sync; none of it is applied.
    if (!DiscardBytes(conn->fd, h.length).ok()) return false;
    return SendError(conn->fd, h, FrameOp::kWriteAck, pin.status());
  }
  {
    // Straight into the registered memory, unless the connection was fenced.
    absl::MutexLock apply(&conn->apply_mu);
    if (conn->fenced.load()) return false;
    const int64_t deadline =
        RealClock::Get()->NowNanos() + int64_t{options_.mid_frame_timeout_seconds} * 1'000'000'000;
    char* dst = reinterpret_cast<char*>(h.addr);
    uint64_t left = h.length;
    while (left > 0) {
      if (conn->fenced.load() || RealClock::Get()->NowNanos() > deadline) return false;
      ssize_t n = recv(conn->fd, dst, left, MSG_WAITALL);
      if (n == 0) return false;
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;  // error, or stalled mid-frame past the socket timeout
      }
      dst += n;
      left -= static_cast<uint64_t>(n);
    }
  }
  pin->Release();
  FrameHeader ack;
  ack.op = FrameOp::kWriteAck;
  ack.request_id = h.request_id;
  ack.addr = h.addr;
  return SendAll(conn->fd, &ack, sizeof(ack)).ok();
}

bool TcpDataServer::HandleRead(int fd, const FrameHeader& h) {
  absl::StatusOr<MemoryRegistry::Pin> pin = registry_->PinRange(h.addr, h.length, /*remote=*/true);
  if (!pin.ok()) return SendError(fd, h, FrameOp::kReadData, pin.status());
  FrameHeader r;
  r.op = FrameOp::kReadData;
  r.request_id = h.request_id;
  r.addr = h.addr;
  r.length = h.length;
  // Header and payload in one sendmsg; the payload straight from registered memory.
  iovec iov[2] = {{&r, sizeof(r)}, {reinterpret_cast<void*>(h.addr), h.length}};
  return SendAll(fd, iov, 2).ok();
}

bool TcpDataServer::HandleControl(int fd, const FrameHeader& h) {
  MemoryBudget::Reservation held(&budget_);
  std::string payload;
  const FrameOp reply_op = static_cast<FrameOp>(static_cast<uint8_t>(h.op) | 0x80);
  absl::Status read = RecvPayload(fd, h.length, &held, &payload);
  if (absl::IsResourceExhausted(read)) {
    MC_LOG(WARNING) << "tcp data server: refusing a control request: " << read.message();
    return SendError(fd, h, reply_op, MakeError(ErrorCode::RPC_FAIL, read.message()));
  }
  if (!read.ok()) return false;
  if (h.op == FrameOp::kService && service_) return HandleServiceStream(fd, h, payload);
  absl::StatusOr<std::string> reply;
  if (h.op == FrameOp::kFence) {
    uint64_t token = 0;
    memcpy(&token, payload.data(), sizeof(token));  // Validate: exactly 8 bytes
    Fence(token);
    reply = std::string();
  } else {
    reply = control_ ? control_(h.op, payload) : absl::UnimplementedError("no control handler");
  }
  if (!reply.ok()) return SendError(fd, h, reply_op, reply.status());
  FrameHeader r;
  r.op = reply_op;
  r.request_id = h.request_id;
  r.length = reply->size();
  iovec iov[2] = {{&r, sizeof(r)}, {reply->data(), reply->size()}};
  return SendAll(fd, iov, 2).ok();
}

bool TcpDataServer::HandleServiceStream(int fd, const FrameHeader& h, const std::string& payload) {
  class SocketStream final : public ControlReplyStream {
   public:
    SocketStream(int fd, const FrameHeader& request) : fd_(fd), request_(request) {}
    absl::Status Begin(uint64_t length) override {
      if (begun_) return absl::FailedPreconditionError("reply already begun");
      if (length > FrameHeader::kMaxControlPayload) {
        return absl::ResourceExhaustedError("reply over the control frame limit");
      }
      begun_ = true;
      left_ = length;
      FrameHeader r;
      r.op = FrameOp::kServiceReply;
      r.request_id = request_.request_id;
      r.length = length;
      return SendAll(fd_, &r, sizeof(r));
    }
    absl::Status Write(const void* data, uint64_t n) override {
      if (!begun_ || n > left_) return absl::OutOfRangeError("reply longer than announced");
      left_ -= n;
      return SendAll(fd_, data, n);
    }
    bool begun() const { return begun_; }
    uint64_t left() const { return left_; }

   private:
    const int fd_;
    const FrameHeader request_;
    bool begun_ = false;
    uint64_t left_ = 0;
  };
  SocketStream stream(fd, h);
  absl::Status s = service_(payload, stream);
  if (!stream.begun()) {
    return SendError(fd, h, FrameOp::kServiceReply,
                     s.ok() ? absl::InternalError("the service sent no reply") : s);
  }
  if (!s.ok()) MC_LOG(WARNING) << "tcp data server: service reply cut: " << s.message();
  return s.ok() && stream.left() == 0;
}

void TcpDataServer::FenceLocked(Connection* conn) {
  shutdown(conn->fd, SHUT_RDWR);  // ends a read blocked in the kernel at once
  absl::MutexLock apply(&conn->apply_mu);
  conn->fenced.store(true);
}

void TcpDataServer::Fence(uint64_t token) {
  absl::MutexLock lock(&mu_);
  auto it = by_token_.find(token);
  if (it != by_token_.end()) {
    FenceLocked(it->second);
    return;
  }
  // Not (yet) seen: its HELLO may still be in flight, so refuse it when it comes.
  if (fenced_tokens_.insert(token).second) {
    fenced_order_.push_back(token);
    if (fenced_order_.size() > kMaxFencedTokens) {
      fenced_tokens_.erase(fenced_order_.front());
      fenced_order_.pop_front();
    }
  }
}

void TcpDataServer::FenceAll() {
  absl::MutexLock lock(&mu_);
  for (Connection* conn : connections_) FenceLocked(conn);
}

}  // namespace mooncake
