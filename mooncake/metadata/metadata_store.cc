#include "mooncake/metadata/metadata_store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mooncake::metadata {

MetadataStore::MetadataStore(size_t max_keys) : max_keys_(max_keys) {}

bool MetadataStore::IsExclusiveKey(absl::string_view key) {
  return absl::StrContains(key, "rpc_meta");
}

absl::StatusOr<std::shared_ptr<const std::string>> MetadataStore::Get(absl::string_view key) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = values_.find(key);
  if (it == values_.end()) return absl::NotFoundError(absl::StrCat("key '", key, "' not found"));
  return it->second;
}

absl::Status MetadataStore::Put(absl::string_view key, std::string value) {
  // Build the shared value outside the lock: it may be megabytes.
  auto shared = std::make_shared<const std::string>(std::move(value));
  absl::MutexLock lock(&mu_);
  auto it = values_.find(key);
  if (it != values_.end()) {
    if (IsExclusiveKey(key) && *it->second != *shared) {
      return absl::AlreadyExistsError(
          absl::StrCat("key '", key,
                       "' is already claimed with different content (another live process uses "
                       "this segment name); delete it first"));
    }
    it->second = std::move(shared);
    return absl::OkStatus();
  }
  if (values_.size() >= max_keys_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "metadata store is full (", max_keys_, " keys); delete unused keys or raise max_keys"));
  }
  values_.emplace(std::string(key), std::move(shared));
  return absl::OkStatus();
}

absl::Status MetadataStore::Remove(absl::string_view key) {
  std::shared_ptr<const std::string> removed;  // freed after the lock is released
  absl::MutexLock lock(&mu_);
  auto it = values_.find(key);
  if (it == values_.end()) return absl::NotFoundError(absl::StrCat("key '", key, "' not found"));
  removed = std::move(it->second);
  values_.erase(it);
  return absl::OkStatus();
}

size_t MetadataStore::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return values_.size();
}

}  // namespace mooncake::metadata
