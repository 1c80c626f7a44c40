// MemDiskIo: a DiskIo in memory with the faults real disks have, driven by a seed so a failing run
// replays: I/O errors on writes and reads, bit rot (a read returns a flipped bit), a capacity
// (ENOSPC beyond it), and crashes that tear the write in progress (a prefix of it, then garbage,
// stays on "disk"). Thread-safe.
//
//   MemDiskIo disk(/*seed=*/7);
//   disk.set_capacity(1 << 20);
//   disk.TearNextWrite();             // the next WriteFile / Append crashes half way
//   ... the store writes, fails ...
//   disk.Restart();                   // "reboot": the torn file stays, operations work again
#ifndef MOONCAKE_DISK_MEM_DISK_IO_H_
#define MOONCAKE_DISK_MEM_DISK_IO_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "mooncake/common/rng.h"
#include "mooncake/disk/disk_io.h"

namespace mooncake {

struct MemDiskFaults {
  double write_error = 0;  // probability a WriteFile / Append fails (and leaves nothing)
  double read_error = 0;   // probability a ReadAt fails
  double bit_rot = 0;      // probability a ReadAt returns one flipped bit
};

class MemDiskIo final : public DiskIo {
 public:
  explicit MemDiskIo(uint64_t seed) : rng_(seed) {}

  void set_faults(const MemDiskFaults& faults) ABSL_LOCKS_EXCLUDED(mu_);
  // Bytes all files together may hold; 0 = unlimited.
  void set_capacity(uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // TearNextWrite makes the next WriteFile or Append crash part way: a random prefix of its bytes
  // (possibly none) and random garbage after it stay, the call fails, and every later call fails
  // until Restart.
  void TearNextWrite() ABSL_LOCKS_EXCLUDED(mu_);
  void Restart() ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t used_bytes() const ABSL_LOCKS_EXCLUDED(mu_);
  // FlipBit corrupts one stored bit of `path` (a test of the checksums).
  void FlipBit(const std::string& path, uint64_t offset) ABSL_LOCKS_EXCLUDED(mu_);
  // TruncateForTesting cuts `path` to `size` bytes (a torn tail).
  void TruncateForTesting(const std::string& path, uint64_t size) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Status MakeDirs(const std::string& dir) override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override;
  absl::Status WriteFile(const std::string& path, const void* data, uint64_t n) override;
  absl::Status Append(const std::string& path, const void* data, uint64_t n) override;
  absl::StatusOr<std::unique_ptr<DiskFile>> Open(const std::string& path) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;

 private:
  class File;
  friend class File;
  absl::Status Check(const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a write of `n` bytes to `content`: all of it, or a torn prefix when a tear is armed.
  absl::Status Store(const std::string& path, std::string* content, const void* data, uint64_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReadFault(const std::string& path, char* dst, uint64_t n) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  Rng rng_ ABSL_GUARDED_BY(mu_);
  MemDiskFaults faults_ ABSL_GUARDED_BY(mu_);
  uint64_t capacity_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t used_ ABSL_GUARDED_BY(mu_) = 0;
  bool tear_next_ ABSL_GUARDED_BY(mu_) = false;
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> dirs_ ABSL_GUARDED_BY(mu_);
  // Open files keep their content alive after Remove, as on POSIX.
  std::map<std::string, std::shared_ptr<std::string>> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake

#endif  // MOONCAKE_DISK_MEM_DISK_IO_H_
