#include "mooncake/metadata/metadata_client.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "mooncake/metadata/etcd_metadata_client.h"
#include "mooncake/metadata/http_metadata_client.h"

namespace mooncake::metadata {
namespace {

constexpr char kUsage[] =
    "use http://host:port/metadata, etcd://host:port[,host:port] or P2PHANDSHAKE";

}  // namespace

absl::StatusOr<std::unique_ptr<MetadataClient>> NewMetadataClient(
    const std::string& connection_string, const std::string& auth_token) {
  absl::string_view text = absl::StripAsciiWhitespace(connection_string);
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("empty metadata connection string; ", kUsage));
  }
  if (absl::EqualsIgnoreCase(text, "P2PHANDSHAKE")) {
    return absl::InvalidArgumentError(
        "P2PHANDSHAKE needs no metadata client: the transfer engine exchanges segment "
        "descriptors directly with its peers");
  }
  if (absl::StartsWithIgnoreCase(text, "http://")) {
    std::string url = absl::StrCat("http://", text.substr(7));
    HttpMetadataClientOptions options;
    options.auth_token = auth_token;
    auto client = HttpMetadataClient::Create(url, options);
    if (!client.ok()) return client.status();
    return std::unique_ptr<MetadataClient>(*std::move(client));
  }
  absl::string_view endpoints = text;
  if (!absl::ConsumePrefix(&endpoints, "etcd://") && absl::StrContains(text, "://")) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported metadata connection string '", text,
                                                   "' (only http and etcd); ", kUsage));
  }
  std::vector<std::string> list = absl::StrSplit(endpoints, ',', absl::SkipWhitespace());
  auto client = EtcdMetadataClient::Create(list);
  if (!client.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("metadata connection string '", text,
                                                   "': ", client.status().message(), "; ", kUsage));
  }
  return std::unique_ptr<MetadataClient>(*std::move(client));
}

}  // namespace mooncake::metadata
