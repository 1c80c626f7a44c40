// EtcdHaClient: the etcd v3 calls leader election needs (leases, ranges, transactions), over
// etcd's JSON gateway through EtcdMetadataClient::Post, with its endpoint failover. Short
// per-endpoint timeouts matter here: a hung member (SIGSTOP) must cost one timeout, not a lease.
//
//   auto etcd = EtcdHaClient::Create({"127.0.0.1:2379"}, {});
//   int64_t lease = *(*etcd)->LeaseGrant(2);
//   bool won = *(*etcd)->Txn({EtcdCompare::Absent("leader")}, {{"leader", "me", lease}});
#ifndef MOONCAKE_MASTER_HA_ETCD_HA_CLIENT_H_
#define MOONCAKE_MASTER_HA_ETCD_HA_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "mooncake/metadata/etcd_metadata_client.h"

namespace mooncake::ha {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

// One comparison of a transaction.
struct EtcdCompare {
  std::string key;
  std::string target;  // "CREATE", "MOD", "VALUE" or "LEASE"
  int64_t number = 0;  // for CREATE, MOD, LEASE
  std::string value;   // for VALUE
  // The key does not exist.
  static EtcdCompare Absent(std::string key) { return {std::move(key), "CREATE", 0, ""}; }
  // The key was last written at `revision` (0: it does not exist).
  static EtcdCompare ModRevision(std::string key, int64_t revision) {
    return {std::move(key), "MOD", revision, ""};
  }
  static EtcdCompare CreateRevision(std::string key, int64_t revision) {
    return {std::move(key), "CREATE", revision, ""};
  }
};

// One write of a transaction: a put (lease 0: none), or a delete when `remove` is set.
struct EtcdWrite {
  std::string key;
  std::string value;
  int64_t lease = 0;
  bool remove = false;
};

class EtcdHaClient {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdHaClient>> Create(
      const std::vector<std::string>& endpoints, metadata::EtcdMetadataClientOptions options);

  // LeaseGrant returns a new lease of at least `ttl_seconds` (etcd may grant more: *granted).
  absl::StatusOr<int64_t> LeaseGrant(int64_t ttl_seconds, int64_t* granted = nullptr);
  // LeaseKeepAlive renews `lease` and returns its new TTL in seconds; 0 if it has expired.
  absl::StatusOr<int64_t> LeaseKeepAlive(int64_t lease);
  absl::Status LeaseRevoke(int64_t lease);

  // Get returns the key, or nullopt if it does not exist.
  absl::StatusOr<absl::optional<EtcdKeyValue>> Get(const std::string& key);
  // GetPrefix returns every key starting with `prefix`.
  absl::StatusOr<std::vector<EtcdKeyValue>> GetPrefix(const std::string& prefix);
  absl::Status Put(const std::string& key, const std::string& value, int64_t lease = 0);
  // Txn applies `writes` if every comparison holds and returns whether it did. *revision gets
  // the store revision after it (the create revision of a key it created).
  absl::StatusOr<bool> Txn(const std::vector<EtcdCompare>& compares,
                           const std::vector<EtcdWrite>& writes, int64_t* revision = nullptr);

 private:
  explicit EtcdHaClient(std::unique_ptr<metadata::EtcdMetadataClient> etcd)
      : etcd_(std::move(etcd)) {}
  absl::StatusOr<std::vector<EtcdKeyValue>> Range(const std::string& key,
                                                  const std::string& range_end);

  const std::unique_ptr<metadata::EtcdMetadataClient> etcd_;
};

}  // namespace mooncake::ha

#endif  // MOONCAKE_MASTER_HA_ETCD_HA_CLIENT_H_
