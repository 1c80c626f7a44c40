#include "mooncake/disk/mem_disk_io.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"

namespace mooncake {

class MemDiskIo::File final : public DiskFile {
 public:
  File(MemDiskIo* io, std::string path, std::shared_ptr<const std::string> content)
      : io_(io), path_(std::move(path)), content_(std::move(content)) {}
  uint64_t size() const override { return content_->size(); }
  absl::Status ReadAt(uint64_t offset, uint64_t n, void* dst) const override {
    if (offset > content_->size() || n > content_->size() - offset) {
      return MakeError(ErrorCode::FILE_READ_FAIL, absl::StrCat("read past the end of ", path_));
    }
    std::memcpy(dst, content_->data() + offset, n);
    return io_->ReadFault(path_, static_cast<char*>(dst), n);
  }

 private:
  MemDiskIo* const io_;
  const std::string path_;
  const std::shared_ptr<const std::string> content_;
};

void MemDiskIo::set_faults(const MemDiskFaults& faults) {
  absl::MutexLock lock(&mu_);
  faults_ = faults;
}

void MemDiskIo::set_capacity(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  capacity_ = bytes;
}

void MemDiskIo::TearNextWrite() {
  absl::MutexLock lock(&mu_);
  tear_next_ = true;
}

void MemDiskIo::Restart() {
  absl::MutexLock lock(&mu_);
  crashed_ = false;
  tear_next_ = false;
}

uint64_t MemDiskIo::used_bytes() const {
  absl::MutexLock lock(&mu_);
  return used_;
}

void MemDiskIo::FlipBit(const std::string& path, uint64_t offset) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end() || offset >= it->second->size()) return;
  (*it->second)[offset] ^= 0x01;  // in place: open files see the rot too, as on a real disk
}

void MemDiskIo::TruncateForTesting(const std::string& path, uint64_t size) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end() || size >= it->second->size()) return;
  used_ -= it->second->size() - size;
  it->second = std::make_shared<std::string>(it->second->substr(0, size));
}

absl::Status MemDiskIo::Check(const std::string& path) {
  if (crashed_) return MakeError(ErrorCode::FILE_WRITE_FAIL, "disk crashed (simulated)");
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (std::find(dirs_.begin(), dirs_.end(), dir) == dirs_.end()) {
    return MakeError(ErrorCode::FILE_NOT_FOUND, absl::StrCat("no directory ", dir));
  }
  return absl::OkStatus();
}

absl::Status MemDiskIo::Store(const std::string& path, std::string* content, const void* data,
                              uint64_t n) {
  if (rng_.Bernoulli(faults_.write_error)) {
    return MakeError(ErrorCode::FILE_WRITE_FAIL,
                     absl::StrCat("cannot write ", path, ": input/output error (simulated)"));
  }
  if (capacity_ != 0 && used_ + n > capacity_) {
    return MakeError(ErrorCode::FILE_WRITE_FAIL,
                     absl::StrCat("cannot write ", path, ": no space left on device (ENOSPC)"));
  }
  if (tear_next_) {
    tear_next_ = false;
    crashed_ = true;
    const uint64_t kept = n == 0 ? 0 : rng_.Uniform(n);
    const uint64_t garbage = n == 0 ? 0 : rng_.Uniform(n - kept + 1);
    content->append(static_cast<const char*>(data), kept);
    for (uint64_t i = 0; i < garbage; ++i) content->push_back(static_cast<char>(rng_.Next64()));
    used_ += kept + garbage;
    return MakeError(ErrorCode::FILE_WRITE_FAIL, "disk crashed mid-write (simulated)");
  }
  content->append(static_cast<const char*>(data), n);
  used_ += n;
  return absl::OkStatus();
}

absl::Status MemDiskIo::ReadFault(const std::string& path, char* dst, uint64_t n) {
  absl::MutexLock lock(&mu_);
  if (rng_.Bernoulli(faults_.read_error)) {
    return MakeError(ErrorCode::FILE_READ_FAIL,
                     absl::StrCat("cannot read ", path, ": input/output error (simulated)"));
  }
  if (n > 0 && rng_.Bernoulli(faults_.bit_rot)) dst[rng_.Uniform(n)] ^= 0x04;
  return absl::OkStatus();
}

absl::Status MemDiskIo::MakeDirs(const std::string& dir) {
  absl::MutexLock lock(&mu_);
  if (crashed_) return MakeError(ErrorCode::FILE_WRITE_FAIL, "disk crashed (simulated)");
  if (std::find(dirs_.begin(), dirs_.end(), dir) == dirs_.end()) dirs_.push_back(dir);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> MemDiskIo::List(const std::string& dir) {
  absl::MutexLock lock(&mu_);
  if (std::find(dirs_.begin(), dirs_.end(), dir) == dirs_.end()) {
    return MakeError(ErrorCode::FILE_NOT_FOUND, absl::StrCat("no directory ", dir));
  }
  std::vector<std::string> names;
  const std::string prefix = dir + "/";
  for (const auto& [path, content] : files_) {
    if (absl::StartsWith(path, prefix) && path.find('/', prefix.size()) == std::string::npos) {
      names.push_back(path.substr(prefix.size()));
    }
  }
  return names;
}

absl::Status MemDiskIo::WriteFile(const std::string& path, const void* data, uint64_t n) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Check(path); !s.ok()) return s;
  if (files_.count(path) != 0) {
    return MakeError(ErrorCode::FILE_OPEN_FAIL, absl::StrCat("cannot create ", path, ": exists"));
  }
  auto content = std::make_shared<std::string>();
  absl::Status s = Store(path, content.get(), data, n);
  // A torn write stays (the crash left it); a clean failure leaves nothing, like PosixDiskIo.
  if (s.ok() || crashed_) {
    files_[path] = std::move(content);
  }
  return s;
}

absl::Status MemDiskIo::Append(const std::string& path, const void* data, uint64_t n) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Check(path); !s.ok()) return s;
  auto& slot = files_[path];
  auto content = slot ? std::make_shared<std::string>(*slot) : std::make_shared<std::string>();
  const uint64_t before = content->size();
  absl::Status s = Store(path, content.get(), data, n);
  if (!s.ok() && !crashed_) content->resize(before);
  slot = std::move(content);
  return s;
}

absl::StatusOr<std::unique_ptr<DiskFile>> MemDiskIo::Open(const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (crashed_) return MakeError(ErrorCode::FILE_OPEN_FAIL, "disk crashed (simulated)");
  auto it = files_.find(path);
  if (it == files_.end()) {
    return MakeError(ErrorCode::FILE_NOT_FOUND,
                     absl::StrCat("cannot open ", path, ": no such file"));
  }
  return std::unique_ptr<DiskFile>(new File(this, path, it->second));
}

absl::Status MemDiskIo::Remove(const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (crashed_) return MakeError(ErrorCode::FILE_WRITE_FAIL, "disk crashed (simulated)");
  auto it = files_.find(path);
  if (it != files_.end()) {
    used_ -= it->second->size();
    files_.erase(it);
  }
  return absl::OkStatus();
}

absl::Status MemDiskIo::Rename(const std::string& from, const std::string& to) {
  absl::MutexLock lock(&mu_);
  if (crashed_) return MakeError(ErrorCode::FILE_WRITE_FAIL, "disk crashed (simulated)");
  auto it = files_.find(from);
  if (it == files_.end()) {
    return MakeError(ErrorCode::FILE_NOT_FOUND, absl::StrCat("cannot rename ", from));
  }
  auto content = it->second;
  files_.erase(it);
  auto old = files_.find(to);
  if (old != files_.end()) {
    used_ -= old->second->size();
    old->second = content;
  } else {
    files_[to] = content;
  }
  return absl::OkStatus();
}

}  // namespace mooncake
