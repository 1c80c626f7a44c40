// DiskIo: the SSD tier's seam to the file system (the LevelDB Env pattern, docs/architecture.md,
// "Layers and seams"). The tier writes each bucket file once, whole, and only reads it afterwards,
// so the seam is whole-file writes, positional reads, an append-only log, and directory listing.
// Implementations:
//   PosixDiskIo  (disk_io.cc)      real files; O_DIRECT where the file system supports it
//   MemDiskIo    (mem_disk_io.h)   memory, with injected I/O errors, a full disk, and crashes that
//                                  tear the write in progress (tests, the simulator)
//
//   std::unique_ptr<DiskIo> io = NewPosixDiskIo();
//   MC_RETURN_IF_ERROR(io->WriteFile("/ssd/bucket-1.mcb", buf, n));  // durable when OK
//   auto f = io->Open("/ssd/bucket-1.mcb");
//   (*f)->ReadAt(0, 4096, dst);
#ifndef MOONCAKE_DISK_DISK_IO_H_
#define MOONCAKE_DISK_DISK_IO_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mooncake {

// kDiskAlignment is the offset, length and buffer-address alignment O_DIRECT needs (and the unit
// every record of the tier is padded to).
inline constexpr uint64_t kDiskAlignment = 4096;

inline uint64_t AlignUp(uint64_t n, uint64_t a = kDiskAlignment) { return (n + a - 1) / a * a; }

// DiskFile is an open file, read positionally. Safe for concurrent reads; stays readable after
// its path is removed.
class DiskFile {
 public:
  virtual ~DiskFile() = default;
  virtual uint64_t size() const = 0;
  // ReadAt reads exactly n bytes at `offset` into `dst`; past the end is OUT_OF_RANGE. With an
  // aligned offset, length and dst it bypasses the page cache where the file system allows.
  virtual absl::Status ReadAt(uint64_t offset, uint64_t n, void* dst) const = 0;
};

class DiskIo {
 public:
  virtual ~DiskIo() = default;
  // MakeDirs creates `dir` and its parents (existing ones are fine).
  virtual absl::Status MakeDirs(const std::string& dir) = 0;
  // List returns the names (not paths) of the regular files in `dir`.
  virtual absl::StatusOr<std::vector<std::string>> List(const std::string& dir) = 0;
  // WriteFile creates `path` (which must not exist) holding data[0, n), and returns once the file
  // and its directory entry are durable. On error the file is removed or left torn: a reader must
  // check what it reads (the tier's records carry checksums).
  virtual absl::Status WriteFile(const std::string& path, const void* data, uint64_t n) = 0;
  // Append adds data[0, n) to the end of `path` (creating it) and returns once it is durable.
  virtual absl::Status Append(const std::string& path, const void* data, uint64_t n) = 0;
  virtual absl::StatusOr<std::unique_ptr<DiskFile>> Open(const std::string& path) = 0;
  // ReadFile returns the whole file (small files: the tombstone log), through Open.
  absl::StatusOr<std::string> ReadFile(const std::string& path);
  virtual absl::Status Remove(const std::string& path) = 0;
  // Rename replaces `to` by `from` atomically and durably.
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
};

// NewPosixDiskIo returns the real file system. Errors carry errno's text and the path.
std::unique_ptr<DiskIo> NewPosixDiskIo();

}  // namespace mooncake

#endif  // MOONCAKE_DISK_DISK_IO_H_
