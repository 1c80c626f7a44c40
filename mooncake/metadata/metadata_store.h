// MetadataStore: the thread-safe key/value table behind the HTTP metadata server
// (docs/compatibility.md section 6).
//
// Transfer engines publish segment descriptors under `mooncake/ram/<name>` and their handshake
// endpoint under `mooncake/rpc_meta/<name>`. The store enforces the two rules the server exposes:
// a key that contains "rpc_meta" cannot be overwritten with a different value (two live processes
// cannot claim one segment name), and the number of keys and the bytes of keys and values together
// are bounded.
//
//   MetadataStore store(/*max_keys=*/1 << 20, /*max_total_bytes=*/1 << 30);
//   absl::Status s = store.Put("mooncake/rpc_meta/a", R"({"ip_or_host_name":"h","rpc_port":1})");
//   auto value = store.Get("mooncake/rpc_meta/a");  // shared_ptr to the stored body
//   s = store.Remove("mooncake/rpc_meta/a");
#ifndef MOONCAKE_METADATA_METADATA_STORE_H_
#define MOONCAKE_METADATA_METADATA_STORE_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace mooncake::metadata {

// MetadataStore maps keys to immutable values. Values are shared, so a reader can keep (and send)
// a value without copying it while a writer replaces it. All methods are thread-safe.
class MetadataStore {
 public:
  // `max_keys` bounds the number of distinct keys, `max_total_bytes` the bytes of all keys and
  // values; a Put beyond either fails and changes nothing.
  MetadataStore(size_t max_keys, size_t max_total_bytes);

  MetadataStore(const MetadataStore&) = delete;
  MetadataStore& operator=(const MetadataStore&) = delete;

  // Get returns the value stored under `key`, or a NotFound error.
  absl::StatusOr<std::shared_ptr<const std::string>> Get(absl::string_view key) const;

  // Put stores `value` under `key`. Errors:
  //   AlreadyExists      `key` contains "rpc_meta" and holds a different value (the same value is
  //   OK); ResourceExhausted  `key` is new and the store already holds max_keys keys, or the
  //   store would hold more than max_total_bytes.
  absl::Status Put(absl::string_view key, std::string value);

  // Remove deletes `key`, or returns NotFound if it is absent.
  absl::Status Remove(absl::string_view key);

  // size is the number of keys stored; total_bytes their bytes and their values'.
  size_t size() const;
  size_t total_bytes() const;

  // IsExclusiveKey says whether a key may only be replaced by an identical value (it names a
  // process's handshake endpoint).
  static bool IsExclusiveKey(absl::string_view key);

 private:
  const size_t max_keys_;  // constant after construction
  const size_t max_total_bytes_;

  mutable absl::Mutex mu_;
  size_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::shared_ptr<const std::string>> values_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_METADATA_STORE_H_
