#include "mooncake/metadata/http_metadata_client.h"

#include <httplib.h>

#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/error_code.h"
#include "mooncake/metadata/http_request_parser.h"
#include "mooncake/metadata/metadata_store.h"
#include "mooncake/net/host_port.h"

namespace mooncake::metadata {
namespace {

std::chrono::microseconds ToChrono(absl::Duration d) {
  return std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

// Short server messages are worth quoting; anything else is summarized by its size.
std::string Quote(absl::string_view body) {
  body = absl::StripAsciiWhitespace(body);
  if (body.empty()) return "";
  if (body.size() > 300) return absl::StrCat(" (", body.size(), "-byte reply)");
  return absl::StrCat(": ", body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpMetadataClient>> HttpMetadataClient::Create(
    const std::string& url, HttpMetadataClientOptions options) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata URL '", url, "' must start with http:// (https is not supported)"));
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  std::string path = slash == absl::string_view::npos ? "" : std::string(rest.substr(slash));
  if (path.find_first_of("?#") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata URL '", url, "' must not have a query or fragment"));
  }
  if (path.empty()) path = "/metadata";
  auto endpoint = ParseHostPort(authority, /*default_port=*/80);
  if (!endpoint.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata URL '", url, "': ", endpoint.status().message()));
  }
  return std::unique_ptr<HttpMetadataClient>(
      new HttpMetadataClient(endpoint->host, endpoint->port, std::move(path), url, options));
}

HttpMetadataClient::HttpMetadataClient(std::string host, int port, std::string path,
                                       std::string url, HttpMetadataClientOptions options)
    : path_(std::move(path)), url_(std::move(url)), options_(options) {
  http_ = std::make_unique<httplib::Client>(host, port);
  http_->set_connection_timeout(ToChrono(options_.connect_timeout));
  http_->set_read_timeout(ToChrono(options_.io_timeout));
  http_->set_write_timeout(ToChrono(options_.io_timeout));
  http_->set_keep_alive(true);
  http_->set_tcp_nodelay(true);  // head and body are separate writes: no Nagle delay
  http_->set_url_encode(false);  // we percent-encode the key ourselves
  if (!options_.auth_token.empty()) {
    http_->set_default_headers({{kAuthHeader, options_.auth_token}});
  }
}

HttpMetadataClient::~HttpMetadataClient() = default;

absl::StatusOr<HttpMetadataClient::Reply> HttpMetadataClient::Send(const std::string& method,
                                                                   const std::string& key,
                                                                   const std::string* body) {
  const std::string target = absl::StrCat(path_, "?key=", PercentEncode(key));
  absl::MutexLock lock(&mu_);
  httplib::Error error = httplib::Error::Success;
  bool timed_out = false;
  // A keep-alive connection the server closed meanwhile fails at once with Read/Write; the second
  // attempt reconnects. A read that ran into the timeout is not retried. Every call here is
  // idempotent.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const absl::Time start = absl::Now();
    httplib::Result result = method == "GET"   ? http_->Get(target)
                             : method == "PUT" ? http_->Put(target, *body, "application/json")
                                               : http_->Delete(target);
    if (result) return Reply{result->status, std::move(result->body)};
    error = result.error();
    timed_out = error == httplib::Error::ConnectionTimeout ||
                (error == httplib::Error::Read && absl::Now() - start >= options_.io_timeout);
    if (timed_out || (error != httplib::Error::Read && error != httplib::Error::Write)) break;
  }
  std::string what;
  switch (error) {
    case httplib::Error::Connection:
      what = "cannot connect (server down or unreachable)";
      break;
    case httplib::Error::ConnectionTimeout:
      what = absl::StrCat("no connection within ", absl::FormatDuration(options_.connect_timeout));
      break;
    case httplib::Error::Read:
      what = timed_out ? absl::StrCat("no reply within ", absl::FormatDuration(options_.io_timeout))
                       : "connection lost while waiting for the reply";
      break;
    default:
      what = httplib::to_string(error);
      break;
  }
  std::string message =
      absl::StrCat("metadata server ", url_, ": ", method, " key '", key, "' failed: ", what);
  if (timed_out) return MakeError(ErrorCode::RPC_TIMEOUT, message);
  return MakeError(ErrorCode::RPC_FAIL, message);
}

absl::Status HttpMetadataClient::ReplyError(const std::string& method, const std::string& key,
                                            const Reply& reply) const {
  std::string message = absl::StrCat("metadata server ", url_, ": ", method, " key '", key,
                                     "' returned HTTP ", reply.status, Quote(reply.body));
  if (reply.status == 404) return absl::NotFoundError(message);
  if (reply.status == 400 && method == "PUT" && MetadataStore::IsExclusiveKey(key)) {
    return MakeError(ErrorCode::SEGMENT_ALREADY_EXISTS,
                     absl::StrCat(message, " (the name is held by another live process)"));
  }
  if (reply.status == 507) return absl::ResourceExhaustedError(message);
  if (reply.status == 401)
    return AuthRefused(absl::StrCat("metadata server ", url_, " (", message, ")"));
  if (reply.status >= 400 && reply.status < 500) return absl::InvalidArgumentError(message);
  return MakeError(ErrorCode::RPC_FAIL, message);
}

absl::StatusOr<std::string> HttpMetadataClient::Get(const std::string& key) {
  if (key.empty()) return absl::InvalidArgumentError("metadata Get: empty key");
  auto reply = Send("GET", key, nullptr);
  if (!reply.ok()) return reply.status();
  if (reply->status != 200) return ReplyError("GET", key, *reply);
  return std::move(reply->body);
}

absl::Status HttpMetadataClient::Put(const std::string& key, const std::string& value) {
  if (key.empty()) return absl::InvalidArgumentError("metadata Put: empty key");
  auto reply = Send("PUT", key, &value);
  if (!reply.ok()) return reply.status();
  if (reply->status != 200) return ReplyError("PUT", key, *reply);
  return absl::OkStatus();
}

absl::Status HttpMetadataClient::Remove(const std::string& key) {
  if (key.empty()) return absl::InvalidArgumentError("metadata Remove: empty key");
  auto reply = Send("DELETE", key, nullptr);
  if (!reply.ok()) return reply.status();
  if (reply->status != 200) return ReplyError("DELETE", key, *reply);
  return absl::OkStatus();
}

}  // namespace mooncake::metadata
