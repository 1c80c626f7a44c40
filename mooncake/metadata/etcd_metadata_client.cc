#include "mooncake/metadata/etcd_metadata_client.h"

#include <httplib.h>

#include <chrono>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "mooncake/common/error_code.h"
#include "mooncake/metadata/etcd_json.h"
#include "nlohmann/json.hpp"

namespace mooncake::metadata {
namespace {

using nlohmann::json;

std::chrono::microseconds ToChrono(absl::Duration d) {
  return std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

// etcd's gateway answers errors as {"error": "...", "code": N, "message": "..."}.
std::string GatewayError(const std::string& body) {
  json reply = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (reply.is_object()) {
    for (const char* field : {"message", "error"}) {
      auto it = reply.find(field);
      if (it != reply.end() && it->is_string()) return it->get<std::string>();
    }
  }
  std::string text(absl::StripAsciiWhitespace(body));
  if (text.size() > 300) text = absl::StrCat(text.substr(0, 300), "...");
  return text;
}

// int64 fields are strings in proto3 JSON ("deleted": "1"); accept numbers too.
// GatewayReply is what one POST to the gateway produced.
struct GatewayReply {
  bool complete = false;  // a status and a whole JSON body arrived
  int status = 0;         // 0 if no response head arrived
  std::string body;
  httplib::Error error = httplib::Error::Success;
};

// Post sends one request. etcd's gateway ends error replies with chunked trailer fields
// ("Grpc-Trailer-Content-Type"), which cpp-httplib 0.11 cannot parse: it reports Error::Read after
// the body has arrived. So the head and body are captured as they stream in, and a reply whose
// body is complete JSON counts even if httplib fails on the trailer that follows it.
GatewayReply Post(httplib::Client& http, const std::string& path, const std::string& body) {
  GatewayReply reply;
  httplib::Request request;
  request.method = "POST";
  request.path = path;
  request.body = body;
  request.set_header("Content-Type", "application/json");
  request.response_handler = [&reply](const httplib::Response& response) {
    reply.status = response.status;
    return true;
  };
  request.content_receiver = [&reply](const char* data, size_t size, uint64_t /*offset*/,
                                      uint64_t /*total*/) {
    reply.body.append(data, size);
    return true;
  };
  httplib::Response response;
  if (http.send(request, response, reply.error)) {
    reply.status = response.status;
    reply.complete = true;
    return reply;
  }
  if (reply.status != 0 && reply.error == httplib::Error::Read && json::accept(reply.body)) {
    reply.complete = true;
  }
  return reply;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdMetadataClient>> EtcdMetadataClient::Create(
    const std::vector<std::string>& endpoints, EtcdMetadataClientOptions options) {
  std::vector<HostPort> parsed;
  for (const std::string& raw : endpoints) {
    absl::string_view text = absl::StripAsciiWhitespace(raw);
    absl::ConsumePrefix(&text, "http://");
    absl::ConsumeSuffix(&text, "/");
    if (text.empty()) continue;
    auto endpoint = ParseHostPort(text);
    if (!endpoint.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint list: ", endpoint.status().message()));
    }
    parsed.push_back(*std::move(endpoint));
  }
  if (parsed.empty()) {
    return absl::InvalidArgumentError("etcd endpoint list is empty; use etcd://host:port[,...]");
  }
  return std::unique_ptr<EtcdMetadataClient>(new EtcdMetadataClient(std::move(parsed), options));
}

EtcdMetadataClient::EtcdMetadataClient(std::vector<HostPort> endpoints,
                                       EtcdMetadataClientOptions options)
    : options_(options) {
  for (HostPort& address : endpoints) {
    auto http = std::make_unique<httplib::Client>(address.host, address.port);
    http->set_connection_timeout(ToChrono(options_.connect_timeout));
    http->set_read_timeout(ToChrono(options_.io_timeout));
    http->set_write_timeout(ToChrono(options_.io_timeout));
    http->set_keep_alive(true);
    http->set_tcp_nodelay(true);  // head and body are separate writes: no Nagle delay
    endpoints_.push_back(Endpoint{std::move(address), std::move(http)});
  }
}

EtcdMetadataClient::~EtcdMetadataClient() = default;

absl::StatusOr<std::string> EtcdMetadataClient::Call(const std::string& path,
                                                     const std::string& body,
                                                     const std::string& what) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> failures;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    const size_t index = (preferred_ + i) % endpoints_.size();
    Endpoint& endpoint = endpoints_[index];
    // One retry on the same endpoint covers a keep-alive connection that etcd closed meanwhile.
    GatewayReply reply = Post(*endpoint.http, path, body);
    if (!reply.complete &&
        (reply.error == httplib::Error::Read || reply.error == httplib::Error::Write) &&
        reply.status == 0) {
      reply = Post(*endpoint.http, path, body);
    }
    if (!reply.complete) {
      failures.push_back(
          absl::StrCat(endpoint.address.ToString(), " (", httplib::to_string(reply.error),
                       reply.error == httplib::Error::Connection ? ": unreachable" : "", ")"));
      continue;
    }
    if (reply.status >= 500) {
      // Unavailable member (no leader, shutting down): another member may serve.
      failures.push_back(absl::StrCat(endpoint.address.ToString(), " (HTTP ", reply.status, ": ",
                                      GatewayError(reply.body), ")"));
      continue;
    }
    preferred_ = index;
    if (reply.status != 200) {
      return MakeError(
          ErrorCode::ETCD_OPERATION_ERROR,
          absl::StrCat("etcd ", what, " at ", endpoint.address.ToString(), " failed: HTTP ",
                       reply.status, ": ", GatewayError(reply.body)));
    }
    return std::move(reply.body);
  }
  return MakeError(
      ErrorCode::ETCD_OPERATION_ERROR,
      absl::StrCat("etcd ", what, " failed on every endpoint: ", absl::StrJoin(failures, ", ")));
}

absl::StatusOr<std::string> EtcdMetadataClient::Get(const std::string& key) {
  if (key.empty()) return absl::InvalidArgumentError("metadata Get: empty key");
  const std::string what = absl::StrCat("get of key '", key, "'");
  json request = {{"key", absl::Base64Escape(key)}};
  auto body = Call("/v3/kv/range", request.dump(), what);
  if (!body.ok()) return body.status();
  auto reply = ParseEtcdReply(*body, what);
  if (!reply.ok()) return reply.status();
  auto kvs = reply->find("kvs");
  if (kvs == reply->end() || !kvs->is_array() || kvs->empty()) {
    return absl::NotFoundError(absl::StrCat("key '", key, "' not found in etcd"));
  }
  const json& kv = (*kvs)[0];
  std::string value;
  auto encoded = kv.find("value");
  if (encoded != kv.end()) {  // an empty value is omitted
    if (!encoded->is_string() || !absl::Base64Unescape(encoded->get<std::string>(), &value)) {
      return MakeError(ErrorCode::ETCD_OPERATION_ERROR,
                       absl::StrCat("etcd get of key '", key, "': malformed value in reply"));
    }
  }
  return value;
}

absl::Status EtcdMetadataClient::Put(const std::string& key, const std::string& value) {
  if (key.empty()) return absl::InvalidArgumentError("metadata Put: empty key");
  json request = {{"key", absl::Base64Escape(key)}, {"value", absl::Base64Escape(value)}};
  return Call("/v3/kv/put", request.dump(), absl::StrCat("put of key '", key, "'")).status();
}

absl::Status EtcdMetadataClient::Remove(const std::string& key) {
  if (key.empty()) return absl::InvalidArgumentError("metadata Remove: empty key");
  const std::string what = absl::StrCat("delete of key '", key, "'");
  json request = {{"key", absl::Base64Escape(key)}};
  auto body = Call("/v3/kv/deleterange", request.dump(), what);
  if (!body.ok()) return body.status();
  auto reply = ParseEtcdReply(*body, what);
  if (!reply.ok()) return reply.status();
  if (EtcdJsonInt(*reply, "deleted") == 0) {
    return absl::NotFoundError(absl::StrCat("key '", key, "' not found in etcd"));
  }
  return absl::OkStatus();
}

}  // namespace mooncake::metadata
