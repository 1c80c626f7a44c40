#include "mooncake/metadata/metadata_store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mooncake::metadata {

MetadataStore::MetadataStore(size_t max_keys, size_t max_total_bytes)
    : max_keys_(max_keys), max_total_bytes_(max_total_bytes) {}

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
  const size_t old_bytes = it != values_.end() ? key.size() + it->second->size() : 0;
  const size_t new_bytes = key.size() + shared->size();
  if (it != values_.end() && IsExclusiveKey(key) && *it->second != *shared) {
    return absl::AlreadyExistsError(
        absl::StrCat("key '", key,
                     "' is already claimed with different content (another live process uses "
                     "this segment name); delete it first"));
  }
  if (total_bytes_ - old_bytes + new_bytes > max_total_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("metadata store is full (", total_bytes_, " of ", max_total_bytes_,
                     " bytes); delete unused keys or raise max_total_bytes"));
  }
  if (it != values_.end()) {
    it->second = std::move(shared);
    total_bytes_ = total_bytes_ - old_bytes + new_bytes;
    return absl::OkStatus();
  }
  if (values_.size() >= max_keys_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "metadata store is full (", max_keys_, " keys); delete unused keys or raise max_keys"));
  }
  values_.emplace(std::string(key), std::move(shared));
  total_bytes_ += new_bytes;
  return absl::OkStatus();
}

absl::Status MetadataStore::Remove(absl::string_view key) {
  std::shared_ptr<const std::string> removed;  // freed after the lock is released
  absl::MutexLock lock(&mu_);
  auto it = values_.find(key);
  if (it == values_.end()) return absl::NotFoundError(absl::StrCat("key '", key, "' not found"));
  removed = std::move(it->second);
  total_bytes_ -= key.size() + removed->size();
  values_.erase(it);
  return absl::OkStatus();
}

size_t MetadataStore::total_bytes() const {
  absl::ReaderMutexLock lock(&mu_);
  return total_bytes_;
}

size_t MetadataStore::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return values_.size();
}

}  // namespace mooncake::metadata
