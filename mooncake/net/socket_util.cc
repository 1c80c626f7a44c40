#include "mooncake/net/socket_util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mooncake {
namespace {

constexpr char kErrnoPayload[] = "mooncake.net/errno";

absl::Status Errno(absl::string_view what, int err) {
  absl::Status s = absl::UnavailableError(absl::StrCat(what, ": ", strerror(err)));
  s.SetPayload(kErrnoPayload, absl::Cord(std::to_string(err)));
  return s;
}

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};

absl::StatusOr<std::unique_ptr<addrinfo, AddrInfoDeleter>> Resolve(const std::string& host,
                                                                   int port, bool passive) {
  addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  return std::unique_ptr<addrinfo, AddrInfoDeleter>(result);
}

sockaddr_un AbstractAddress(const std::string& name, socklen_t* len) {
  sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  size_t n = std::min(name.size(), sizeof(addr.sun_path) - 1);
  memcpy(addr.sun_path + 1, name.data(), n);  // leading NUL: abstract namespace
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  return addr;
}

}  // namespace

absl::StatusOr<int> ListenUnixAbstract(const std::string& name) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket(AF_UNIX)", errno);
  socklen_t len;
  sockaddr_un addr = AbstractAddress(name, &len);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, 128) != 0) {
    absl::Status s = Errno(absl::StrCat("listen on @", name), errno);
    close(fd);
    return s;
  }
  return fd;
}

absl::StatusOr<int> ConnectUnixAbstract(const std::string& name) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket(AF_UNIX)", errno);
  socklen_t len;
  sockaddr_un addr = AbstractAddress(name, &len);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    absl::Status s = Errno(absl::StrCat("connect @", name), errno);
    close(fd);
    return s;
  }
  return fd;
}

absl::Status SendWithFd(int sock, const void* data, size_t length, int pass_fd) {
  iovec iov{const_cast<void*>(data), length};
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (pass_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno("sendmsg", errno);
  if (static_cast<size_t>(n) < length) {
    return SendAll(sock, static_cast<const char*>(data) + n, length - static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status RecvWithFd(int sock, void* data, size_t length, int* received_fd) {
  *received_fd = -1;
  iovec iov{data, length};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno("recvmsg", errno);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      memcpy(received_fd, CMSG_DATA(c), sizeof(int));
    }
  }
  if (n == 0) return absl::UnavailableError("connection closed");
  if (static_cast<size_t>(n) < length) {
    return RecvAll(sock, static_cast<char*>(data) + n, length - static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

int SocketErrno(const absl::Status& status) {
  auto p = status.GetPayload(kErrnoPayload);
  int err = 0;
  if (!p.has_value() || !absl::SimpleAtoi(std::string(*p), &err)) return 0;
  return err;
}

absl::StatusOr<int> ListenTcp(const std::string& host, int port, int* bound_port) {
  auto ai = Resolve(host, port, /*passive=*/true);
  if (!ai.ok()) return ai.status();
  absl::Status last = absl::UnavailableError("no address to bind");
  for (addrinfo* a = ai->get(); a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = Errno("socket", errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) {
      last = Errno(absl::StrCat("bind ", host, ":", port), errno);
      close(fd);
      continue;
    }
    if (listen(fd, 512) != 0) {
      last = Errno("listen", errno);
      close(fd);
      continue;
    }
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    *bound_port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                           : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    return fd;
  }
  return last;
}

absl::StatusOr<int> ConnectTcp(const std::string& host, int port, absl::Duration timeout) {
  auto ai = Resolve(host, port, /*passive=*/false);
  if (!ai.ok()) return ai.status();
  absl::Status last = absl::UnavailableError("no address to connect to");
  for (addrinfo* a = ai->get(); a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      last = Errno("socket", errno);
      continue;
    }
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int ms = static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout)));
      rc = poll(&p, 1, ms);
      if (rc == 0) {
        close(fd);
        last = absl::DeadlineExceededError(
            absl::StrCat("connect ", host, ":", port, ": timed out after ", ms, " ms"));
        continue;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        close(fd);
        last = Errno(absl::StrCat("connect ", host, ":", port), err);
        continue;
      }
    } else if (rc != 0) {
      int err = errno;
      close(fd);
      last = Errno(absl::StrCat("connect ", host, ":", port), err);
      continue;
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }
  return last;
}

absl::Status SendAll(int fd, struct iovec* iov, int iovcnt) {
  while (iovcnt > 0) {
    msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(std::min(iovcnt, IOV_MAX));
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("send", errno);
    }
    size_t left = static_cast<size_t>(n);
    while (iovcnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --iovcnt;
    }
    if (iovcnt > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return absl::OkStatus();
}

absl::Status SendAll(int fd, const void* data, size_t length) {
  iovec iov{const_cast<void*>(data), length};
  return SendAll(fd, &iov, 1);
}

absl::Status RecvAll(int fd, void* data, size_t length) {
  char* p = static_cast<char*>(data);
  while (length > 0) {
    ssize_t n = recv(fd, p, length, MSG_WAITALL);
    if (n == 0) return absl::UnavailableError("connection closed by peer");
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("recv", errno);
    }
    p += n;
    length -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status RecvAllBy(int fd, void* data, size_t length, absl::Time deadline) {
  // No deadline: one blocking recv per piece, not a poll as well (replication's hot path).
  if (deadline == absl::InfiniteFuture()) return RecvAll(fd, data, length);
  char* p = static_cast<char*>(data);
  while (length > 0) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("recv: peer too slow");
    pollfd pfd{fd, POLLIN, 0};
    const int64_t wait_ms = std::min<int64_t>(absl::ToInt64Milliseconds(left), 60000) + 1;
    const int ready = poll(&pfd, 1, static_cast<int>(wait_ms));
    if (ready < 0 && errno != EINTR) return Errno("poll", errno);
    if (ready <= 0) continue;
    ssize_t n = recv(fd, p, length, MSG_DONTWAIT);
    if (n == 0) return absl::UnavailableError("connection closed by peer");
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return Errno("recv", errno);
    }
    p += n;
    length -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status DiscardBytes(int fd, uint64_t length) {
  std::vector<char> scratch(std::min<uint64_t>(length, 1 << 20));
  while (length > 0) {
    size_t n = std::min<uint64_t>(length, scratch.size());
    absl::Status s = RecvAll(fd, scratch.data(), n);
    if (!s.ok()) return s;
    length -= n;
  }
  return absl::OkStatus();
}

void FinishRefusal(int fd, int max_wait_ms) {
  shutdown(fd, SHUT_WR);
  char scratch[64 << 10];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_wait_ms);
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return;
    pollfd p{fd, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return;
    ssize_t n = recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return;  // the peer closed (or reset): nothing more to protect
  }
}

}  // namespace mooncake
