#include "mooncake/transfer/tcp/tcp_data_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

// A peer that stops mid-frame for this long is dropped (an idle connection between frames is fine).
constexpr int kMidFrameTimeoutSeconds = 60;

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

TcpDataServer::TcpDataServer(const MemoryRegistry* registry, ControlFn control)
    : registry_(registry),
      control_(std::move(control)),
      server_(
          "tcp data server", kMaxConnections, [this](int fd) { Serve(fd); },
          [](int fd) {
            // Idle between frames is fine; a peer stalled mid-frame is dropped.
            timeval tv{kMidFrameTimeoutSeconds, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
            return true;
          }) {}

TcpDataServer::~TcpDataServer() { Stop(); }

absl::Status TcpDataServer::Start(const std::string& host, int port) {
  return server_.Start(host, port);
}

void TcpDataServer::Serve(int fd) {
  FrameHeader h;
  while (!server_.stopping() && RecvHeader(fd, &h, server_)) {
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
