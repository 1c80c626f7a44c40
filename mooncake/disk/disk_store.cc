#include "mooncake/disk/disk_store.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/crc32c.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"

namespace mooncake {
namespace {

constexpr uint32_t kRecordMagic = 0x5244434d;     // "MCDR"
constexpr uint32_t kTombstoneMagic = 0x4254434d;  // "MCTB"
constexpr uint16_t kVersion = 1;
constexpr uint64_t kHeaderSize = 64;
constexpr uint64_t kMaxKey = 4096;
constexpr uint64_t kMaxValue = uint64_t{1} << 40;
constexpr char kTombstoneLog[] = "tombstones.mcl";

// The record header, little-endian on disk (the hosts we build for are).
struct RecordHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t flags;
  uint32_t key_len;
  uint32_t reserved0;
  uint64_t value_len;
  uint64_t put_id;
  uint64_t bucket_id;
  uint32_t body_crc;  // of key and value
  uint32_t reserved1;
  uint64_t reserved2;
  uint32_t reserved3;
  uint32_t header_crc;  // of the 60 bytes before it
};
static_assert(sizeof(RecordHeader) == kHeaderSize, "record header is 64 bytes");

uint64_t RecordSpan(uint64_t key_len, uint64_t value_len) {
  return AlignUp(kHeaderSize + key_len + value_len);
}

// Parses and checks a header read at a record boundary of bucket `bucket`.
bool ParseHeader(const char* p, uint64_t bucket, RecordHeader* h) {
  std::memcpy(h, p, sizeof(*h));
  return h->magic == kRecordMagic && h->version == kVersion &&
         h->header_crc == Crc32c(p, offsetof(RecordHeader, header_crc)) && h->key_len > 0 &&
         h->key_len <= kMaxKey && h->value_len > 0 && h->value_len <= kMaxValue &&
         h->bucket_id == bucket;
}

struct AlignedFree {
  void operator()(char* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<char, AlignedFree>;

AlignedBuffer AllocAligned(uint64_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, kDiskAlignment, n == 0 ? kDiskAlignment : n) != 0) return nullptr;
  return AlignedBuffer(static_cast<char*>(p));
}

// A growing aligned scratch buffer per reading thread.
char* Scratch(uint64_t n) {
  thread_local AlignedBuffer buffer;
  thread_local uint64_t capacity = 0;
  if (n > capacity) {
    buffer = AllocAligned(n);
    capacity = buffer ? n : 0;
  }
  return buffer.get();
}

bool ParseBucketName(const std::string& name, uint64_t* id) {
  unsigned long long v = 0;
  char tail[8];
  if (name.size() != 27 || std::sscanf(name.c_str(), "bucket-%16llx.%3s", &v, tail) != 2 ||
      std::strcmp(tail, "mcb") != 0 || v == 0) {
    return false;
  }
  *id = v;
  return true;
}

std::string EncodeTombstone(absl::string_view key, uint64_t put_id, uint64_t bucket) {
  std::string rec;
  auto put32 = [&](uint32_t v) { rec.append(reinterpret_cast<const char*>(&v), 4); };
  auto put64 = [&](uint64_t v) { rec.append(reinterpret_cast<const char*>(&v), 8); };
  put32(kTombstoneMagic);
  put32(static_cast<uint32_t>(key.size()));
  put64(put_id);
  put64(bucket);
  rec.append(key.data(), key.size());
  put32(Crc32c(rec.data(), rec.size()));
  return rec;
}

}  // namespace

struct DiskStore::Counters {
  std::atomic<uint64_t> committed_objects{0};
  std::atomic<uint64_t> write_errors{0};
  std::atomic<uint64_t> read_errors{0};
  std::atomic<uint64_t> checksum_failures{0};
  std::atomic<uint64_t> evicted_objects{0};
  std::atomic<uint64_t> removed_objects{0};
  std::atomic<uint64_t> recovered_objects{0};
  std::atomic<uint64_t> torn_records{0};
};

// One bucket's worth of records, laid out as they go to disk.
class DiskStore::Staged {
 public:
  struct Piece {
    AlignedBuffer data;
    uint64_t bytes = 0;
    std::vector<std::pair<DiskObject, uint64_t>> records;  // object, offset in the piece
  };
  std::vector<Piece> pieces;
  std::vector<DiskObject> skipped;  // invalid items: never stored
};

absl::Status ValidateDiskStoreOptions(const DiskStoreOptions& o) {
  if (o.dir.empty()) return MakeError(ErrorCode::INVALID_PARAMS, "ssd_offload_path is empty");
  if (!(o.high_watermark > 0 && o.high_watermark <= 1)) {
    return MakeError(ErrorCode::INVALID_PARAMS, "disk high watermark must be in (0, 1]");
  }
  if (!(o.evict_slack >= 0 && o.evict_slack < o.high_watermark)) {
    return MakeError(ErrorCode::INVALID_PARAMS, "disk eviction slack must be in [0, watermark)");
  }
  if (o.bucket_size_limit < kDiskAlignment) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("bucket size limit must be at least ", kDiskAlignment, " bytes"));
  }
  return absl::OkStatus();
}

DiskStore::DiskStore(const DiskStoreOptions& options, DiskIo* io)
    : options_(options), io_(io), counters_(std::make_unique<Counters>()) {}

DiskStore::~DiskStore() = default;

absl::StatusOr<std::unique_ptr<DiskStore>> DiskStore::Open(const DiskStoreOptions& options,
                                                           DiskIo* io) {
  if (absl::Status s = ValidateDiskStoreOptions(options); !s.ok()) return s;
  std::unique_ptr<DiskStore> store(new DiskStore(options, io));
  if (absl::Status s = store->Load(); !s.ok()) return s;
  return store;
}

std::string DiskStore::BucketPath(uint64_t id) const {
  return absl::StrFormat("%s/bucket-%016" PRIx64 ".mcb", options_.dir, id);
}

absl::Status DiskStore::Load() {
  if (absl::Status s = io_->MakeDirs(options_.dir); !s.ok()) return s;
  absl::StatusOr<std::vector<std::string>> names = io_->List(options_.dir);
  if (!names.ok()) return names.status();
  std::map<uint64_t, std::string> found;
  for (const std::string& name : *names) {
    uint64_t id;
    if (ParseBucketName(name, &id)) {
      found[id] = name;
    } else if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) {
      (void)io_->Remove(options_.dir + "/" + name);  // a compaction that did not finish
    }
  }
  for (const auto& [id, name] : found) ScanBucket(id, name);
  std::vector<std::string> keep;
  LoadTombstones(&keep);
  // Rewrite the log with only the tombstones still needed (their record is still on disk).
  const std::string log = options_.dir + "/" + kTombstoneLog;
  std::string compacted;
  for (const std::string& rec : keep) compacted += rec;
  if (compacted.empty()) {
    (void)io_->Remove(log);
  } else {
    const std::string tmp = log + ".tmp";
    absl::Status s = io_->WriteFile(tmp, compacted.data(), compacted.size());
    if (s.ok()) s = io_->Rename(tmp, log);
    if (!s.ok()) MC_LOG(WARNING) << "cannot compact " << log << ": " << s.message();
  }
  absl::MutexLock lock(&mu_);
  next_bucket_ = buckets_.empty() ? 1 : buckets_.rbegin()->first + 1;
  counters_->recovered_objects.store(index_.size());
  MC_LOG(INFO) << "disk tier " << options_.dir << ": " << index_.size() << " objects in "
               << buckets_.size() << " buckets (" << used_bytes_ << " bytes) recovered, "
               << counters_->torn_records.load() << " torn records dropped";
  return absl::OkStatus();
}

void DiskStore::ScanBucket(uint64_t id, const std::string& name) {
  const std::string path = options_.dir + "/" + name;
  absl::StatusOr<std::unique_ptr<DiskFile>> file = io_->Open(path);
  if (!file.ok()) {
    MC_LOG(WARNING) << "disk tier: skipping " << path << ": " << file.status().message();
    return;
  }
  std::shared_ptr<DiskFile> f(std::move(*file));
  Bucket bucket;
  bucket.file = f;
  bucket.file_bytes = f->size();
  std::vector<std::pair<std::string, Location>> found;
  uint64_t offset = 0;
  AlignedBuffer header = AllocAligned(kDiskAlignment);
  while (offset + kDiskAlignment <= f->size()) {
    RecordHeader h;
    if (!f->ReadAt(offset, kDiskAlignment, header.get()).ok() ||
        !ParseHeader(header.get(), id, &h)) {
      break;
    }
    const uint64_t span = RecordSpan(h.key_len, h.value_len);
    if (span > f->size() - offset) break;
    AlignedBuffer body = AllocAligned(span);
    if (body == nullptr || !f->ReadAt(offset, span, body.get()).ok() ||
        Crc32c(body.get() + kHeaderSize, h.key_len + h.value_len) != h.body_crc) {
      break;
    }
    Location loc{id, offset, span, h.put_id, h.value_len, h.key_len};
    found.emplace_back(std::string(body.get() + kHeaderSize, h.key_len), loc);
    offset += span;
  }
  if (offset < f->size()) {
    counters_->torn_records.fetch_add(1);
    MC_LOG(WARNING) << "disk tier: " << path << " is torn at byte " << offset << " of " << f->size()
                    << "; the records after it are dropped";
  }
  absl::MutexLock lock(&mu_);
  for (auto& [key, loc] : found) {
    auto it = index_.find(key);
    if (it != index_.end()) ForgetLocked(key, it->second);  // a later bucket holds it again
    bucket.records.emplace_back(key, loc.put_id);
    ++bucket.live;
    stored_bytes_ += loc.size;
    index_[key] = loc;
  }
  used_bytes_ += bucket.file_bytes;
  buckets_[id] = std::move(bucket);
  if (buckets_[id].live == 0) DeleteBucketLocked(id);
}

void DiskStore::LoadTombstones(std::vector<std::string>* keep) {
  const std::string log = options_.dir + "/" + kTombstoneLog;
  absl::StatusOr<std::string> data = io_->ReadFile(log);
  if (!data.ok()) return;
  size_t pos = 0;
  const std::string& d = *data;
  absl::MutexLock lock(&mu_);
  while (pos + 28 <= d.size()) {
    uint32_t magic, key_len;
    uint64_t put_id, bucket;
    std::memcpy(&magic, d.data() + pos, 4);
    std::memcpy(&key_len, d.data() + pos + 4, 4);
    std::memcpy(&put_id, d.data() + pos + 8, 8);
    std::memcpy(&bucket, d.data() + pos + 16, 8);
    if (magic != kTombstoneMagic || key_len == 0 || key_len > kMaxKey ||
        pos + 28 + key_len > d.size()) {
      break;
    }
    uint32_t crc;
    std::memcpy(&crc, d.data() + pos + 24 + key_len, 4);
    if (crc != Crc32c(d.data() + pos, 24 + key_len)) break;
    std::string key = d.substr(pos + 24, key_len);
    auto it = index_.find(key);
    if (it != index_.end() && it->second.put_id == put_id && it->second.bucket == bucket) {
      ForgetLocked(key, it->second);
    }
    // Needed as long as the record it kills is on disk.
    if (buckets_.count(bucket) != 0) keep->push_back(d.substr(pos, 28 + key_len));
    pos += 28 + key_len;
  }
  if (pos < d.size()) {
    MC_LOG(WARNING) << "disk tier: " << log << " is torn at byte " << pos << "; its tail dropped";
  }
}

void DiskStore::ForgetLocked(absl::string_view key, Location loc) {
  auto it = index_.find(key);
  if (it == index_.end() || it->second.bucket != loc.bucket || it->second.offset != loc.offset) {
    return;
  }
  stored_bytes_ -= it->second.size;
  index_.erase(it);
  auto b = buckets_.find(loc.bucket);
  if (b != buckets_.end() && --b->second.live == 0) DeleteBucketLocked(loc.bucket);
}

void DiskStore::DeleteBucketLocked(uint64_t id) {
  auto b = buckets_.find(id);
  if (b == buckets_.end()) return;
  // Open readers keep the file; the path goes now.
  absl::Status s = io_->Remove(BucketPath(id));
  if (!s.ok()) MC_LOG(WARNING) << "disk tier: " << s.message();
  used_bytes_ -= b->second.file_bytes;
  buckets_.erase(b);
}

std::vector<DiskObject> DiskStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<DiskObject> out;
  out.reserve(index_.size());
  for (const auto& [key, loc] : index_) out.push_back({key, loc.put_id, loc.size});
  return out;
}

bool DiskStore::Contains(absl::string_view key, uint64_t put_id) const {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  return it != index_.end() && (put_id == 0 || it->second.put_id == put_id);
}

absl::StatusOr<DiskObject> DiskStore::Find(absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return MakeError(ErrorCode::FILE_NOT_FOUND, "not on disk");
  return DiskObject{std::string(key), it->second.put_id, it->second.size};
}

absl::StatusOr<uint64_t> DiskStore::SizeOf(absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return MakeError(ErrorCode::FILE_NOT_FOUND, "not on disk");
  return it->second.size;
}

void DiskStore::StagedDeleter::operator()(Staged* staged) const { delete staged; }

DiskStore::StagedPtr DiskStore::Stage(absl::Span<const Item> items) {
  StagedPtr staged(new Staged());
  // One record per key: a later duplicate in the same batch is refused.
  absl::flat_hash_set<absl::string_view> seen;
  std::vector<bool> valid(items.size());
  for (size_t k = 0; k < items.size(); ++k) {
    const Item& it = items[k];
    valid[k] = !it.key.empty() && it.key.size() <= kMaxKey && it.size > 0 && it.size <= kMaxValue &&
               it.data != nullptr && seen.insert(it.key).second;
  }
  size_t i = 0;
  while (i < items.size()) {
    // Size the next piece: records up to the limit (at least one).
    uint64_t bytes = 0;
    size_t end = i;
    for (; end < items.size(); ++end) {
      const Item& it = items[end];
      if (!valid[end]) continue;
      const uint64_t span = RecordSpan(it.key.size(), it.size);
      if (bytes > 0 && bytes + span > options_.bucket_size_limit) break;
      bytes += span;
    }
    Staged::Piece piece;
    piece.data = AllocAligned(bytes);
    uint64_t off = 0;
    for (; i < end; ++i) {
      const Item& it = items[i];
      DiskObject obj{it.key, it.put_id, it.size};
      if (!valid[i] || piece.data == nullptr) {
        staged->skipped.push_back(std::move(obj));
        continue;
      }
      const uint64_t span = RecordSpan(it.key.size(), it.size);
      char* rec = piece.data.get() + off;
      std::memcpy(rec + kHeaderSize, it.key.data(), it.key.size());
      std::memcpy(rec + kHeaderSize + it.key.size(), it.data, it.size);
      const uint64_t used = kHeaderSize + it.key.size() + it.size;
      std::memset(rec + used, 0, span - used);
      RecordHeader h{};
      h.magic = kRecordMagic;
      h.version = kVersion;
      h.key_len = static_cast<uint32_t>(it.key.size());
      h.value_len = it.size;
      h.put_id = it.put_id;
      h.body_crc = Crc32c(rec + kHeaderSize, it.key.size() + it.size);
      std::memcpy(rec, &h, sizeof(h));  // bucket id and header CRC are set at commit
      piece.records.emplace_back(std::move(obj), off);
      off += span;
    }
    piece.bytes = off;
    if (!piece.records.empty()) staged->pieces.push_back(std::move(piece));
  }
  return staged;
}

bool DiskStore::MakeRoomLocked(uint64_t incoming, std::vector<DiskObject>* evicted) {
  if (options_.capacity_bytes == 0) return true;
  const double high = options_.capacity_bytes * options_.high_watermark;
  if (incoming > high) return false;
  if (used_bytes_ + incoming <= high) return true;
  const double target = high - options_.capacity_bytes * options_.evict_slack;
  const size_t before = evicted->size();
  while (!buckets_.empty() && used_bytes_ + incoming > target) {
    auto oldest = buckets_.begin();
    const uint64_t id = oldest->first;
    for (const auto& [key, put_id] : oldest->second.records) {
      auto it = index_.find(key);
      if (it == index_.end() || it->second.bucket != id) continue;
      evicted->push_back({key, put_id, it->second.size});
      stored_bytes_ -= it->second.size;
      index_.erase(it);
    }
    DeleteBucketLocked(id);
  }
  counters_->evicted_objects.fetch_add(evicted->size() - before);
  return used_bytes_ + incoming <= high;
}

DiskStore::CommitResult DiskStore::Commit(StagedPtr staged) {
  CommitResult result;
  for (DiskObject& o : staged->skipped) result.failed.push_back(std::move(o));
  if (!result.failed.empty()) {
    result.status = MakeError(ErrorCode::INVALID_PARAMS, "invalid objects were not staged");
  }
  for (Staged::Piece& piece : staged->pieces) {
    std::vector<std::pair<DiskObject, uint64_t>> todo;
    {
      // Objects already held with the same put id need no second copy.
      absl::MutexLock lock(&mu_);
      for (auto& rec : piece.records) {
        auto it = index_.find(rec.first.key);
        if (it != index_.end() && it->second.put_id == rec.first.put_id) {
          result.stored.push_back(std::move(rec.first));
        } else {
          todo.push_back(std::move(rec));
        }
      }
    }
    if (todo.empty()) continue;
    uint64_t id;
    absl::Status s;
    {
      absl::MutexLock lock(&mu_);
      id = next_bucket_++;
      if (!MakeRoomLocked(piece.bytes, &result.evicted)) {
        s = MakeError(ErrorCode::FILE_WRITE_FAIL,
                      absl::StrCat("disk tier ", options_.dir, " is full (", used_bytes_, " of ",
                                   options_.capacity_bytes, " bytes)"));
      } else {
        used_bytes_ += piece.bytes;  // claimed while the write runs
      }
    }
    if (s.ok()) {
      for (const auto& [obj, off] : todo) {
        char* rec = piece.data.get() + off;
        RecordHeader h;
        std::memcpy(&h, rec, sizeof(h));
        h.bucket_id = id;
        h.header_crc = Crc32c(&h, offsetof(RecordHeader, header_crc));
        std::memcpy(rec, &h, sizeof(h));
      }
      s = io_->WriteFile(BucketPath(id), piece.data.get(), piece.bytes);
      std::shared_ptr<DiskFile> file;
      if (s.ok()) {
        absl::StatusOr<std::unique_ptr<DiskFile>> f = io_->Open(BucketPath(id));
        if (f.ok()) {
          file = std::move(*f);
        } else {
          s = f.status();
          (void)io_->Remove(BucketPath(id));
        }
      }
      std::vector<std::pair<DiskObject, uint64_t>> replaced;
      {
        absl::MutexLock lock(&mu_);
        if (!s.ok()) {
          used_bytes_ -= piece.bytes;
        } else {
          Bucket& b = buckets_[id];
          b.file = std::move(file);
          b.file_bytes = piece.bytes;
          for (auto& [obj, off] : todo) {
            const uint32_t key_len = static_cast<uint32_t>(obj.key.size());
            auto it = index_.find(obj.key);
            if (it != index_.end()) {
              replaced.push_back(
                  {{obj.key, it->second.put_id, it->second.size}, it->second.bucket});
              ForgetLocked(obj.key, it->second);
            }
            index_[obj.key] =
                Location{id, off, RecordSpan(key_len, obj.size), obj.put_id, obj.size, key_len};
            stored_bytes_ += obj.size;
            b.records.emplace_back(obj.key, obj.put_id);
            ++b.live;
          }
        }
      }
      if (s.ok()) {
        counters_->committed_objects.fetch_add(todo.size());
        for (auto& [obj, off] : todo) result.stored.push_back(std::move(obj));
        AppendTombstones(replaced);
        continue;
      }
    }
    MC_LOG(WARNING) << "disk tier: " << todo.size() << " objects not stored: " << s.message();
    counters_->write_errors.fetch_add(todo.size());
    for (auto& [obj, off] : todo) result.failed.push_back(std::move(obj));
    result.status = s;
  }
  return result;
}

absl::Status DiskStore::Read(absl::string_view key, uint64_t put_id, void* dst, uint64_t size,
                             bool* dropped) {
  absl::StatusOr<uint64_t> held = SizeOf(key);
  if (held.ok() && size < *held) {
    return MakeError(
        ErrorCode::INVALID_PARAMS,
        absl::StrCat("buffer of ", size, " bytes is smaller than '", key, "' (", *held, " bytes)"));
  }
  return ReadRange(key, put_id, 0, held.ok() ? *held : size, dst, dropped);
}

absl::Status DiskStore::ReadRange(absl::string_view key, uint64_t put_id, uint64_t offset,
                                  uint64_t length, void* dst, bool* dropped) {
  if (dropped != nullptr) *dropped = false;
  Location loc;
  std::shared_ptr<DiskFile> file;
  {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(key);
    if (it == index_.end() || (put_id != 0 && it->second.put_id != put_id)) {
      return MakeError(ErrorCode::FILE_NOT_FOUND, absl::StrCat("'", key, "' is not on disk"));
    }
    loc = it->second;
    file = buckets_.at(loc.bucket).file;
  }
  if (offset > loc.size || length > loc.size - offset) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("range [", offset, ", +", length, ") is past the end of '", key,
                                  "' (", loc.size, " bytes)"));
  }
  char* rec = Scratch(loc.span);
  absl::Status s = rec == nullptr ? MakeError(ErrorCode::FILE_READ_FAIL, "out of memory")
                                  : file->ReadAt(loc.offset, loc.span, rec);
  if (s.ok()) {
    RecordHeader h;
    if (!ParseHeader(rec, loc.bucket, &h) || h.key_len != loc.key_len || h.value_len != loc.size ||
        h.put_id != loc.put_id || std::memcmp(rec + kHeaderSize, key.data(), key.size()) != 0 ||
        Crc32c(rec + kHeaderSize, h.key_len + h.value_len) != h.body_crc) {
      counters_->checksum_failures.fetch_add(1);
      s = MakeError(ErrorCode::FILE_READ_FAIL,
                    absl::StrCat("the disk record of '", key, "' fails its checksum"));
    }
  } else {
    counters_->read_errors.fetch_add(1);
  }
  if (!s.ok()) {
    MC_LOG(WARNING) << "disk tier: " << s.message() << "; dropping it";
    {
      absl::MutexLock lock(&mu_);
      ForgetLocked(key, loc);
    }
    AppendTombstones({{{std::string(key), loc.put_id, loc.size}, loc.bucket}});
    if (dropped != nullptr) *dropped = true;
    return s;
  }
  std::memcpy(dst, rec + kHeaderSize + loc.key_len + offset, length);
  return absl::OkStatus();
}

uint64_t DiskStore::Remove(absl::Span<const DiskObject> objects) {
  std::vector<std::pair<DiskObject, uint64_t>> dead;
  {
    absl::MutexLock lock(&mu_);
    for (const DiskObject& o : objects) {
      auto it = index_.find(o.key);
      if (it == index_.end() || (o.put_id != 0 && it->second.put_id != o.put_id)) continue;
      const Location loc = it->second;
      dead.push_back({{o.key, loc.put_id, loc.size}, loc.bucket});
      ForgetLocked(o.key, loc);
    }
  }
  counters_->removed_objects.fetch_add(dead.size());
  AppendTombstones(dead);
  return dead.size();
}

void DiskStore::AppendTombstones(const std::vector<std::pair<DiskObject, uint64_t>>& dead) {
  std::string log;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [obj, bucket] : dead) {
      // A record whose bucket is already deleted cannot come back.
      if (buckets_.count(bucket) != 0) log += EncodeTombstone(obj.key, obj.put_id, bucket);
    }
  }
  if (log.empty()) return;
  absl::MutexLock lock(&tombstone_mu_);
  absl::Status s = io_->Append(options_.dir + "/" + kTombstoneLog, log.data(), log.size());
  if (!s.ok()) {
    MC_LOG(WARNING) << "disk tier: cannot log removals (they may return after a restart): "
                    << s.message();
  }
}

DiskStoreStats DiskStore::GetStats() const {
  DiskStoreStats st;
  {
    absl::MutexLock lock(&mu_);
    st.objects = index_.size();
    st.buckets = buckets_.size();
    st.used_bytes = used_bytes_;
    st.stored_bytes = stored_bytes_;
  }
  st.committed_objects = counters_->committed_objects.load();
  st.write_errors = counters_->write_errors.load();
  st.read_errors = counters_->read_errors.load();
  st.checksum_failures = counters_->checksum_failures.load();
  st.evicted_objects = counters_->evicted_objects.load();
  st.removed_objects = counters_->removed_objects.load();
  st.recovered_objects = counters_->recovered_objects.load();
  st.torn_records = counters_->torn_records.load();
  return st;
}

}  // namespace mooncake
