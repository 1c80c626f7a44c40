// EtcdMetadataClient: the MetadataClient backend for etcd v3 ("etcd://h1:p1,h2:p2" or "h1:p1"),
// through etcd's JSON gateway (POST /v3/kv/put, /v3/kv/range, /v3/kv/deleterange with base64 keys
// and values), since Debian has no C++ etcd client. Keys are stored as given.
//
//   auto client = EtcdMetadataClient::Create({"10.0.0.1:2379", "10.0.0.2:2379"});
//   absl::Status s = (*client)->Put("mooncake/ram/node0", descriptor_json);
//
// A call tries the endpoints in order, starting from the one that answered last, and moves to the
// next one when an endpoint is unreachable or answers 5xx. Failures are ETCD_OPERATION_ERROR
// (from MakeError) naming every endpoint tried; an absent key is an absl NotFound error.
#ifndef MOONCAKE_METADATA_ETCD_METADATA_CLIENT_H_
#define MOONCAKE_METADATA_ETCD_METADATA_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/metadata/metadata_client.h"
#include "mooncake/net/host_port.h"

namespace httplib {
class Client;
}  // namespace httplib

namespace mooncake::metadata {

// EtcdMetadataClientOptions bounds how long one endpoint may take.
struct EtcdMetadataClientOptions {
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration io_timeout = absl::Seconds(5);
};

// EtcdMetadataClient talks to an etcd cluster. Thread-safe; calls are serialized.
class EtcdMetadataClient final : public MetadataClient {
 public:
  // Create takes endpoints as "host:port" (an "http://" prefix is accepted). It does not connect.
  static absl::StatusOr<std::unique_ptr<EtcdMetadataClient>> Create(
      const std::vector<std::string>& endpoints, EtcdMetadataClientOptions options = {});

  ~EtcdMetadataClient() override;

  absl::StatusOr<std::string> Get(const std::string& key) override;
  absl::Status Put(const std::string& key, const std::string& value) override;
  absl::Status Remove(const std::string& key) override;

  // PostJson sends any gateway call ("/v3/lease/grant", "/v3/kv/txn", ...) with the same endpoint
  // failover and returns the body of the 200 reply. `what` names the operation in errors.
  absl::StatusOr<std::string> PostJson(const std::string& path, const std::string& request,
                                       const std::string& what) {
    return Call(path, request, what);
  }

 private:
  struct Endpoint {
    HostPort address;
    std::unique_ptr<httplib::Client> http;
  };

  EtcdMetadataClient(std::vector<HostPort> endpoints, EtcdMetadataClientOptions options);

  // Call POSTs the JSON `request` to `path` ("/v3/kv/put") with failover and returns the body of
  // the 200 reply. `what` describes the operation for messages.
  absl::StatusOr<std::string> Call(const std::string& path, const std::string& request,
                                   const std::string& what);

  const EtcdMetadataClientOptions options_;  // constant after construction

  absl::Mutex mu_;
  std::vector<Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);  // never empty
  size_t preferred_ ABSL_GUARDED_BY(mu_) = 0;             // endpoint that answered last
};

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_ETCD_METADATA_CLIENT_H_
