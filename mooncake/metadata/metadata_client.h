// MetadataClient: the key/value directory where transfer engines publish segment descriptors
// (`mooncake/ram/<name>`) and handshake endpoints (`mooncake/rpc_meta/<name>`), with one backend
// per kind of metadata service, chosen by the connection string users pass as
// MOONCAKE_TE_META_DATA_SERVER / `metadata_server`:
//
//   "http://host:port/metadata"      HTTP metadata server (docs/compatibility.md section 6)
//   "etcd://h1:p1,h2:p2" or "h1:p1"  etcd v3 through its JSON gateway, endpoints tried in order
//   "P2PHANDSHAKE"                   no directory: the transfer engine handles it, not this factory
//
//   auto client = NewMetadataClient("http://127.0.0.1:8080/metadata");
//   if (!client.ok()) return client.status();
//   absl::Status s = (*client)->Put("mooncake/ram/node0", descriptor_json);
//   auto value = (*client)->Get("mooncake/ram/node0");   // NotFound when absent
//   s = (*client)->Remove("mooncake/ram/node0");
#ifndef MOONCAKE_METADATA_METADATA_CLIENT_H_
#define MOONCAKE_METADATA_METADATA_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mooncake::metadata {

// MetadataClient is a key/value directory where transfer engines publish segment descriptors.
// Implementations are thread-safe.
class MetadataClient {
 public:
  virtual ~MetadataClient() = default;

  // Get returns the value of `key`; an absl NotFound error when it is absent.
  virtual absl::StatusOr<std::string> Get(const std::string& key) = 0;

  // Put stores `value` under `key`. Claiming an `rpc_meta` key that holds a different value fails
  // with AlreadyExists (SEGMENT_ALREADY_EXISTS) on the HTTP backend.
  virtual absl::Status Put(const std::string& key, const std::string& value) = 0;

  // Remove deletes `key`; an absl NotFound error when it is absent.
  virtual absl::Status Remove(const std::string& key) = 0;
};

// NewMetadataClient returns the backend for `connection_string` (see the file comment). It does
// not contact the service; the first call reports an unreachable one. "P2PHANDSHAKE" and unknown
// schemes are InvalidArgument errors that say what to use instead. `auth_token` (MC_AUTH_TOKEN)
// goes with every HTTP request; etcd has its own access control and does not take it.
absl::StatusOr<std::unique_ptr<MetadataClient>> NewMetadataClient(
    const std::string& connection_string, const std::string& auth_token = "");

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_METADATA_CLIENT_H_
