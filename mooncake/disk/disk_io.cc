#include "mooncake/disk/disk_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace {

absl::Status Errno(ErrorCode code, absl::string_view what, const std::string& path, int err) {
  // A full disk is the one error an operator acts on differently: say so plainly.
  const char* text = err == ENOSPC ? "no space left on device (ENOSPC)" : std::strerror(err);
  return MakeError(code, absl::StrCat(what, " ", path, ": ", text));
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool Aligned(const void* p, uint64_t offset, uint64_t n) {
  return reinterpret_cast<uintptr_t>(p) % kDiskAlignment == 0 && offset % kDiskAlignment == 0 &&
         n % kDiskAlignment == 0;
}

absl::Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(ErrorCode::FILE_OPEN_FAIL, "cannot open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Errno(ErrorCode::FILE_WRITE_FAIL, "cannot sync directory", dir, err);
  return absl::OkStatus();
}

// Writes all of data[0, n) at `offset`, retrying short writes and EINTR.
absl::Status WriteAll(int fd, const void* data, uint64_t n, uint64_t offset,
                      const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno(ErrorCode::FILE_WRITE_FAIL, "cannot write", path, errno);
    }
    if (w == 0) return Errno(ErrorCode::FILE_WRITE_FAIL, "cannot write", path, ENOSPC);
    p += w;
    n -= static_cast<uint64_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

class PosixDiskFile final : public DiskFile {
 public:
  PosixDiskFile(std::string path, int direct_fd, int buffered_fd, uint64_t size)
      : path_(std::move(path)), direct_fd_(direct_fd), buffered_fd_(buffered_fd), size_(size) {}
  ~PosixDiskFile() override {
    if (direct_fd_ >= 0) ::close(direct_fd_);
    ::close(buffered_fd_);
  }
  uint64_t size() const override { return size_; }

  absl::Status ReadAt(uint64_t offset, uint64_t n, void* dst) const override {
    if (offset > size_ || n > size_ - offset) {
      return MakeError(ErrorCode::FILE_READ_FAIL,
                       absl::StrCat("read of ", n, " bytes at ", offset, " is past the end of ",
                                    path_, " (", size_, " bytes)"));
    }
    const int fd = direct_fd_ >= 0 && Aligned(dst, offset, n) ? direct_fd_ : buffered_fd_;
    char* p = static_cast<char*>(dst);
    while (n > 0) {
      ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Errno(ErrorCode::FILE_READ_FAIL, "cannot read", path_, errno);
      }
      if (r == 0) return Errno(ErrorCode::FILE_READ_FAIL, "unexpected end of", path_, EIO);
      p += r;
      n -= static_cast<uint64_t>(r);
      offset += static_cast<uint64_t>(r);
    }
    return absl::OkStatus();
  }

 private:
  const std::string path_;
  const int direct_fd_;  // -1 where the file system refuses O_DIRECT (tmpfs)
  const int buffered_fd_;
  const uint64_t size_;
};

class PosixDiskIo final : public DiskIo {
 public:
  absl::Status MakeDirs(const std::string& dir) override {
    if (dir.empty()) return MakeError(ErrorCode::INVALID_PARAMS, "empty directory path");
    for (size_t pos = 1; pos <= dir.size(); ++pos) {
      if (pos != dir.size() && dir[pos] != '/') continue;
      std::string prefix = dir.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        return Errno(ErrorCode::FILE_OPEN_FAIL, "cannot create directory", prefix, errno);
      }
    }
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return MakeError(ErrorCode::FILE_OPEN_FAIL, absl::StrCat(dir, " is not a directory"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return Errno(ErrorCode::FILE_NOT_FOUND, "cannot list", dir, errno);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_type == DT_REG || e->d_type == DT_UNKNOWN) names.emplace_back(e->d_name);
    }
    ::closedir(d);
    return names;
  }

  absl::Status WriteFile(const std::string& path, const void* data, uint64_t n) override {
    const bool direct = Aligned(data, 0, n);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (direct ? O_DIRECT : 0),
                    0644);
    if (fd < 0 && direct && errno == EINVAL) {
      fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (fd < 0) return Errno(ErrorCode::FILE_OPEN_FAIL, "cannot create", path, errno);
    absl::Status s = WriteAll(fd, data, n, 0, path);
    if (s.ok() && ::fdatasync(fd) != 0) {
      s = Errno(ErrorCode::FILE_WRITE_FAIL, "cannot sync", path, errno);
    }
    ::close(fd);
    if (s.ok()) s = SyncDir(DirOf(path));
    if (!s.ok()) ::unlink(path.c_str());
    return s;
  }

  absl::Status Append(const std::string& path, const void* data, uint64_t n) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(ErrorCode::FILE_OPEN_FAIL, "cannot open", path, errno);
    struct stat st;
    const bool created = ::fstat(fd, &st) == 0 && st.st_size == 0;
    absl::Status s;
    const char* p = static_cast<const char*>(data);
    while (s.ok() && n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        s = Errno(ErrorCode::FILE_WRITE_FAIL, "cannot append to", path, w < 0 ? errno : ENOSPC);
        break;
      }
      p += w;
      n -= static_cast<uint64_t>(w);
    }
    if (s.ok() && ::fdatasync(fd) != 0) {
      s = Errno(ErrorCode::FILE_WRITE_FAIL, "cannot sync", path, errno);
    }
    ::close(fd);
    if (s.ok() && created) s = SyncDir(DirOf(path));
    return s;
  }

  absl::StatusOr<std::unique_ptr<DiskFile>> Open(const std::string& path) override {
    int buffered = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (buffered < 0) {
      return Errno(errno == ENOENT ? ErrorCode::FILE_NOT_FOUND : ErrorCode::FILE_OPEN_FAIL,
                   "cannot open", path, errno);
    }
    struct stat st;
    if (::fstat(buffered, &st) != 0) {
      int err = errno;
      ::close(buffered);
      return Errno(ErrorCode::FILE_OPEN_FAIL, "cannot stat", path, err);
    }
    int direct = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    return std::unique_ptr<DiskFile>(
        new PosixDiskFile(path, direct, buffered, static_cast<uint64_t>(st.st_size)));
  }

  absl::Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Errno(ErrorCode::FILE_WRITE_FAIL, "cannot remove", path, errno);
    }
    return absl::OkStatus();
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return Errno(ErrorCode::FILE_WRITE_FAIL, "cannot rename", from, errno);
    }
    return SyncDir(DirOf(to));
  }
};

}  // namespace

std::unique_ptr<DiskIo> NewPosixDiskIo() { return std::make_unique<PosixDiskIo>(); }

absl::StatusOr<std::string> DiskIo::ReadFile(const std::string& path) {
  absl::StatusOr<std::unique_ptr<DiskFile>> f = Open(path);
  if (!f.ok()) return f.status();
  std::string out((*f)->size(), '\0');
  absl::Status s = (*f)->ReadAt(0, out.size(), out.data());
  if (!s.ok()) return s;
  return out;
}

}  // namespace mooncake
