// HttpMetadataClient: the MetadataClient backend for an HTTP metadata server (docs/compatibility.md
// section 6), i.e. connection strings "http://host:port/metadata".
//
//   auto client = HttpMetadataClient::Create("http://127.0.0.1:8080/metadata");
//   absl::Status s = (*client)->Put("mooncake/rpc_meta/node0", R"({"ip_or_host_name":...})");
//
// Requests go over one keep-alive connection (calls are serialized), with connect and I/O
// timeouts, so a down or hung server gives a prompt error that names the URL. Status mapping:
//   404 -> NotFound; PUT 400 on an rpc_meta key -> AlreadyExists (SEGMENT_ALREADY_EXISTS);
//   413 and other 4xx -> InvalidArgument; 507 -> ResourceExhausted; 5xx -> Unavailable (RPC_FAIL);
//   unreachable -> Unavailable (RPC_FAIL); timeout -> DeadlineExceeded (RPC_TIMEOUT).
#ifndef MOONCAKE_METADATA_HTTP_METADATA_CLIENT_H_
#define MOONCAKE_METADATA_HTTP_METADATA_CLIENT_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/metadata/metadata_client.h"

namespace httplib {
class Client;
}  // namespace httplib

namespace mooncake::metadata {

// HttpMetadataClientOptions bounds how long a call may wait.
struct HttpMetadataClientOptions {
  absl::Duration connect_timeout = absl::Seconds(3);
  absl::Duration io_timeout = absl::Seconds(10);  // per read or write of a request
  std::string auth_token;  // sent with every request (x-mooncake-auth) when not empty
};

// HttpMetadataClient talks to one HTTP metadata server. Thread-safe.
class HttpMetadataClient final : public MetadataClient {
 public:
  // Create parses `url` ("http://host[:port][/path]"; the path defaults to /metadata). It does not
  // connect.
  static absl::StatusOr<std::unique_ptr<HttpMetadataClient>> Create(
      const std::string& url, HttpMetadataClientOptions options = {});

  ~HttpMetadataClient() override;

  absl::StatusOr<std::string> Get(const std::string& key) override;
  absl::Status Put(const std::string& key, const std::string& value) override;
  absl::Status Remove(const std::string& key) override;

 private:
  struct Reply {
    int status = 0;
    std::string body;
  };

  HttpMetadataClient(std::string host, int port, std::string path, std::string url,
                     HttpMetadataClientOptions options);

  // Send performs one request, retrying once on a broken keep-alive connection.
  absl::StatusOr<Reply> Send(const std::string& method, const std::string& key,
                             const std::string* body);
  // ReplyError turns a non-2xx reply into a status that names the call.
  absl::Status ReplyError(const std::string& method, const std::string& key,
                          const Reply& reply) const;

  // Constant after construction.
  const std::string path_;  // e.g. "/metadata"
  const std::string url_;   // as configured, for messages
  const HttpMetadataClientOptions options_;

  absl::Mutex mu_;
  std::unique_ptr<httplib::Client> http_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_HTTP_METADATA_CLIENT_H_
