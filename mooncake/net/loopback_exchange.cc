#include "mooncake/net/loopback_exchange.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

// Exchange sends and receives at once (poll), so a server that answers while the request is
// still arriving cannot deadlock against a request larger than the socket buffers.
absl::StatusOr<std::string> Exchange(int fd, absl::string_view request, absl::Duration timeout,
                                     size_t max_reply) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string reply;
  size_t sent = 0;
  bool write_closed = false;
  char buf[64 << 10];
  while (true) {
    if (sent == request.size() && !write_closed) {
      shutdown(fd, SHUT_WR);
      write_closed = true;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (write_closed ? 0 : POLLOUT)), 0};
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) return absl::DeadlineExceededError("the server neither answered nor closed");
    int r = poll(&p, 1, static_cast<int>(left_ms));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
    if (p.revents & POLLIN || p.revents & (POLLHUP | POLLERR)) {
      ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0) return reply;
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        if (errno == ECONNRESET) return reply;  // the server closed with our bytes unread
        return absl::InternalError(absl::StrCat("recv: ", strerror(errno)));
      }
      if (n > 0) reply.append(buf, static_cast<size_t>(n));
      if (reply.size() > max_reply) return absl::OutOfRangeError("reply too long");
    }
    if (!write_closed && (p.revents & POLLOUT)) {
      ssize_t n =
          send(fd, request.data() + sent, request.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      // The server closed before reading everything: what it sent is the answer.
      if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) write_closed = true;
    }
  }
}

}  // namespace

absl::StatusOr<std::string> LoopbackExchange(int port, absl::string_view request,
                                             absl::Duration timeout, size_t max_reply) {
  absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", port, timeout);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<std::string> reply = Exchange(*fd, request, timeout, max_reply);
  close(*fd);
  return reply;
}

absl::StatusOr<std::string> UnixExchange(const std::string& abstract_name,
                                         absl::string_view request, absl::Duration timeout,
                                         size_t max_reply) {
  absl::StatusOr<int> fd = ConnectUnixAbstract(abstract_name);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<std::string> reply = Exchange(*fd, request, timeout, max_reply);
  close(*fd);
  return reply;
}

}  // namespace mooncake
