// HttpMetadataServer: the HTTP key/value directory where transfer engines publish their segment
// descriptors and handshake endpoints (docs/compatibility.md section 6). It runs standalone as
// `http_metadata_server` and inside mooncake_master (--enable_http_metadata_server).
//
//   GET    /metadata?key=K   200 + stored body, 404 if absent
//   PUT    /metadata?key=K   200; 400 if K contains "rpc_meta" and holds a different body
//   DELETE /metadata?key=K   200, 404 if absent
//   GET    /health           200
//   missing key -> 400, body over max_body_bytes -> 413, store full (max_keys) -> 507.
//
//   HttpMetadataServerOptions options;
//   options.host = "127.0.0.1";
//   options.port = 0;  // ephemeral
//   HttpMetadataServer server(options);
//   absl::Status s = server.Start();  // listening on 127.0.0.1:server.port() when ok
//   ...
//   server.Stop();
//
// One event-loop thread serves every connection (HTTP/1.0 and 1.1, keep-alive, pipelining,
// Content-Length and chunked bodies, Expect: 100-continue). Sizes and times are bounded: a
// malformed request gets a 4xx answer and its connection closed, a request that is not complete
// within request_timeout gets 408, an idle keep-alive connection is closed after idle_timeout,
// and beyond max_connections the oldest idle connection is dropped (or the new one refused with
// 503), so slow or hostile peers cannot starve others.
#ifndef MOONCAKE_METADATA_HTTP_METADATA_SERVER_H_
#define MOONCAKE_METADATA_HTTP_METADATA_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mooncake::metadata {

// HttpMetadataServerOptions configures an HttpMetadataServer.
struct HttpMetadataServerOptions {
  std::string host = "0.0.0.0";      // the only address the server binds (numeric or a name)
  int port = 8080;                   // 0 picks an ephemeral port; see HttpMetadataServer::port()
  size_t max_body_bytes = 16 << 20;  // larger PUT bodies get 413
  size_t max_keys = 1 << 20;         // PUT of a new key beyond this gets 507
  // Additions beyond docs/compatibility.md, so that memory is bounded by configuration, not by
  // clients:
  size_t max_total_bytes = 1 << 30;       // keys and values stored; a PUT beyond gets 507
  size_t max_inflight_bytes = 256 << 20;  // request bodies being received; beyond gets 503
  // Timeouts and connections (defaults suit production; tests shorten them):
  absl::Duration request_timeout = absl::Seconds(10);  // first byte to last byte of a request,
                                                       // and longest stall while sending a reply
  absl::Duration idle_timeout = absl::Seconds(60);     // keep-alive connection with no request
  size_t max_connections = 1024;                       // open client connections
  // With a token (MC_AUTH_TOKEN), PUT and DELETE must carry it in the x-mooncake-auth header or
  // get 401; GET stays open. "" = anyone may write (Mooncake's behaviour).
  std::string auth_token;
};

// HttpMetadataServer serves the metadata API on background threads. Thread-safe.
class HttpMetadataServer {
 public:
  explicit HttpMetadataServer(HttpMetadataServerOptions options);
  // ~HttpMetadataServer stops the server.
  ~HttpMetadataServer();

  HttpMetadataServer(const HttpMetadataServer&) = delete;
  HttpMetadataServer& operator=(const HttpMetadataServer&) = delete;

  // Start binds host:port and starts serving. Fails with a message naming the address if it
  // cannot be resolved or bound (for example, the port is taken), and if called again or after
  // Stop (a server starts once).
  absl::Status Start();

  // port is the bound port once Start succeeded (the ephemeral one if options.port was 0), else 0.
  int port() const;

  // Stop closes the listener and every connection and joins the serving thread. Idempotent.
  void Stop();

  // Writes refused for a missing or wrong token (options.auth_token).
  uint64_t auth_refusals() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_HTTP_METADATA_SERVER_H_
