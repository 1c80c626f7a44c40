// RawHttpConnection (tests only): a blocking loopback TCP client that sends arbitrary bytes and
// reads HTTP responses, for driving servers with malformed, partial or pipelined requests.
//
//   RawHttpConnection conn;
//   ASSERT_TRUE(conn.Connect(port).ok());
//   conn.Send("GET /health HTTP/1.1\r\n\r\n");
//   auto response = conn.ReadResponse();   // status 200, headers, body
//   EXPECT_TRUE(conn.WaitForClose(absl::Seconds(2)));
#ifndef MOONCAKE_METADATA_RAW_HTTP_CONNECTION_H_
#define MOONCAKE_METADATA_RAW_HTTP_CONNECTION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mooncake::metadata {

// RawHttpResponse is one response as read from the wire.
struct RawHttpResponse {
  int status = 0;
  std::string head;  // status line and headers, lower-cased
  std::string body;
};

// RawHttpConnection owns one socket. Every read gives up after `timeout` (default 5 s) so a test
// fails instead of hanging.
class RawHttpConnection {
 public:
  RawHttpConnection() = default;
  ~RawHttpConnection();
  RawHttpConnection(const RawHttpConnection&) = delete;
  RawHttpConnection& operator=(const RawHttpConnection&) = delete;

  // Connect opens a TCP connection to ip:port.
  absl::Status Connect(int port, const std::string& ip = "127.0.0.1",
                       absl::Duration timeout = absl::Seconds(5));

  // Send writes all of `bytes`; false if the peer closed or reset.
  bool Send(absl::string_view bytes);

  // ShutdownWrite half-closes the connection (the server sees EOF).
  void ShutdownWrite();

  // ReadResponse reads one response framed by Content-Length (interim 1xx responses included).
  absl::StatusOr<RawHttpResponse> ReadResponse();

  // WaitForClose reads until EOF or a reset; true if that happened within `timeout`. Bytes read
  // meanwhile are discarded.
  bool WaitForClose(absl::Duration timeout);

  // HasInput says whether a byte, EOF or error can be read now (buffered bytes count).
  bool HasInput();

  int fd() const { return fd_; }

 private:
  // Fill reads more bytes into buffer_; false on EOF, error or timeout.
  bool Fill();

  int fd_ = -1;
  std::string buffer_;  // received, not yet returned
};

// RawHttpExchange connects, sends `bytes`, and reads one response.
absl::StatusOr<RawHttpResponse> RawHttpExchange(int port, absl::string_view bytes);

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_RAW_HTTP_CONNECTION_H_
