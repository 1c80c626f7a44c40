#include "mooncake/master/ha/etcd_ha_client.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/metadata/etcd_json.h"
#include "nlohmann/json.hpp"

namespace mooncake::ha {
namespace {

using json = nlohmann::json;

using metadata::EtcdJsonBytes;
using metadata::EtcdJsonInt;

absl::StatusOr<json> Parse(const absl::StatusOr<std::string>& body, const std::string& what) {
  if (!body.ok()) return body.status();
  return metadata::ParseEtcdReply(*body, what);
}

std::vector<EtcdKeyValue> Kvs(const json& reply) {
  std::vector<EtcdKeyValue> out;
  auto kvs = reply.find("kvs");
  if (kvs == reply.end() || !kvs->is_array()) return out;
  for (const json& kv : *kvs) {
    EtcdKeyValue e;
    e.key = EtcdJsonBytes(kv, "key");
    e.value = EtcdJsonBytes(kv, "value");
    e.create_revision = EtcdJsonInt(kv, "create_revision");
    e.mod_revision = EtcdJsonInt(kv, "mod_revision");
    e.lease = EtcdJsonInt(kv, "lease");
    out.push_back(std::move(e));
  }
  return out;
}

// The key just past every key with this prefix (etcd's range_end for a prefix).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char last = static_cast<unsigned char>(prefix.back());
    if (last < 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdHaClient>> EtcdHaClient::Create(
    const std::vector<std::string>& endpoints, metadata::EtcdMetadataClientOptions options) {
  auto etcd = metadata::EtcdMetadataClient::Create(endpoints, options);
  if (!etcd.ok()) return etcd.status();
  return std::unique_ptr<EtcdHaClient>(new EtcdHaClient(*std::move(etcd)));
}

absl::StatusOr<int64_t> EtcdHaClient::LeaseGrant(int64_t ttl_seconds, int64_t* granted) {
  auto reply =
      Parse(etcd_->PostJson("/v3/lease/grant", json{{"TTL", ttl_seconds}}.dump(), "lease grant"),
            "lease grant");
  if (!reply.ok()) return reply.status();
  const int64_t id = EtcdJsonInt(*reply, "ID");
  if (id == 0) {
    return MakeError(ErrorCode::ETCD_OPERATION_ERROR,
                     absl::StrCat("etcd lease grant: no lease in reply: ", reply->dump()));
  }
  if (granted != nullptr) *granted = EtcdJsonInt(*reply, "TTL");
  return id;
}

absl::StatusOr<int64_t> EtcdHaClient::LeaseKeepAlive(int64_t lease) {
  auto reply = Parse(etcd_->PostJson("/v3/lease/keepalive",
                                     json{{"ID", std::to_string(lease)}}.dump(), "lease keepalive"),
                     "lease keepalive");
  if (!reply.ok()) return reply.status();
  auto result = reply->find("result");
  if (result == reply->end() || !result->is_object()) return 0;
  return EtcdJsonInt(*result, "TTL");
}

absl::Status EtcdHaClient::LeaseRevoke(int64_t lease) {
  return etcd_
      ->PostJson("/v3/lease/revoke", json{{"ID", std::to_string(lease)}}.dump(), "lease revoke")
      .status();
}

absl::StatusOr<std::vector<EtcdKeyValue>> EtcdHaClient::Range(const std::string& key,
                                                              const std::string& range_end) {
  json request = {{"key", absl::Base64Escape(key)}};
  if (!range_end.empty()) request["range_end"] = absl::Base64Escape(range_end);
  const std::string what = absl::StrCat("range of '", key, "'");
  auto reply = Parse(etcd_->PostJson("/v3/kv/range", request.dump(), what), what);
  if (!reply.ok()) return reply.status();
  return Kvs(*reply);
}

absl::StatusOr<absl::optional<EtcdKeyValue>> EtcdHaClient::Get(const std::string& key) {
  auto kvs = Range(key, "");
  if (!kvs.ok()) return kvs.status();
  if (kvs->empty()) return absl::optional<EtcdKeyValue>();
  return absl::optional<EtcdKeyValue>(std::move(kvs->front()));
}

absl::StatusOr<std::vector<EtcdKeyValue>> EtcdHaClient::GetPrefix(const std::string& prefix) {
  return Range(prefix, PrefixEnd(prefix));
}

absl::Status EtcdHaClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  json request = {{"key", absl::Base64Escape(key)}, {"value", absl::Base64Escape(value)}};
  if (lease != 0) request["lease"] = std::to_string(lease);
  return etcd_->PostJson("/v3/kv/put", request.dump(), absl::StrCat("put of '", key, "'")).status();
}

absl::StatusOr<bool> EtcdHaClient::Txn(const std::vector<EtcdCompare>& compares,
                                       const std::vector<EtcdWrite>& writes, int64_t* revision) {
  json request = {{"compare", json::array()}, {"success", json::array()}};
  for (const EtcdCompare& c : compares) {
    json cmp = {{"key", absl::Base64Escape(c.key)}, {"result", "EQUAL"}, {"target", c.target}};
    if (c.target == "CREATE") cmp["create_revision"] = std::to_string(c.number);
    if (c.target == "MOD") cmp["mod_revision"] = std::to_string(c.number);
    if (c.target == "LEASE") cmp["lease"] = std::to_string(c.number);
    if (c.target == "VALUE") cmp["value"] = absl::Base64Escape(c.value);
    request["compare"].push_back(std::move(cmp));
  }
  for (const EtcdWrite& w : writes) {
    if (w.remove) {
      request["success"].push_back(
          {{"request_delete_range", {{"key", absl::Base64Escape(w.key)}}}});
      continue;
    }
    json put = {{"key", absl::Base64Escape(w.key)}, {"value", absl::Base64Escape(w.value)}};
    if (w.lease != 0) put["lease"] = std::to_string(w.lease);
    request["success"].push_back({{"request_put", std::move(put)}});
  }
  auto reply = Parse(etcd_->PostJson("/v3/kv/txn", request.dump(), "transaction"), "transaction");
  if (!reply.ok()) return reply.status();
  if (revision != nullptr) {
    auto header = reply->find("header");
    *revision =
        header != reply->end() && header->is_object() ? EtcdJsonInt(*header, "revision") : 0;
  }
  auto succeeded = reply->find("succeeded");
  return succeeded != reply->end() && succeeded->is_boolean() && succeeded->get<bool>();
}

}  // namespace mooncake::ha
