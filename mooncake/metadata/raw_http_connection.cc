#include "mooncake/metadata/raw_http_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mooncake::metadata {

RawHttpConnection::~RawHttpConnection() {
  if (fd_ >= 0) close(fd_);
}

absl::Status RawHttpConnection::Connect(int port, const std::string& ip, absl::Duration timeout) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return absl::InternalError(std::strerror(errno));
  timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd_);
    fd_ = -1;
    return absl::UnavailableError(
        absl::StrCat("connect ", ip, ":", port, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

bool RawHttpConnection::Send(absl::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void RawHttpConnection::ShutdownWrite() { shutdown(fd_, SHUT_WR); }

bool RawHttpConnection::Fill() {
  char buf[64 << 10];
  for (;;) {
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }
}

absl::StatusOr<RawHttpResponse> RawHttpConnection::ReadResponse() {
  size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill()) {
      return absl::UnavailableError(absl::StrCat(
          "connection closed or timed out before a response head; got '", buffer_, "'"));
    }
  }
  RawHttpResponse response;
  response.head = absl::AsciiStrToLower(buffer_.substr(0, end + 2));
  buffer_.erase(0, end + 4);
  std::vector<absl::string_view> status_line = absl::StrSplit(response.head, ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &response.status)) {
    return absl::InternalError(absl::StrCat("bad status line in '", response.head, "'"));
  }
  size_t length = 0;
  size_t pos = response.head.find("\r\ncontent-length:");
  if (pos != std::string::npos) {
    size_t value_start = pos + 17;
    size_t value_end = response.head.find("\r\n", value_start);
    absl::SimpleAtoi(
        absl::StripAsciiWhitespace(response.head.substr(value_start, value_end - value_start)),
        &length);
  }
  while (buffer_.size() < length) {
    if (!Fill()) return absl::UnavailableError("connection closed or timed out mid-body");
  }
  response.body = buffer_.substr(0, length);
  buffer_.erase(0, length);
  return response;
}

bool RawHttpConnection::WaitForClose(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  char buf[4096];
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd{fd_, POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return true;  // reset
  }
}

bool RawHttpConnection::HasInput() {
  if (!buffer_.empty()) return true;
  pollfd pfd{fd_, POLLIN, 0};
  return poll(&pfd, 1, 0) > 0;
}

absl::StatusOr<RawHttpResponse> RawHttpExchange(int port, absl::string_view bytes) {
  RawHttpConnection conn;
  absl::Status s = conn.Connect(port);
  if (!s.ok()) return s;
  if (!conn.Send(bytes)) return absl::UnavailableError("send failed");
  return conn.ReadResponse();
}

}  // namespace mooncake::metadata
