// Same-host shared memory: memfd-backed buffers that peers on the same host map and copy into
// directly, and the unix-socket handshake that hands a buffer's memfd to such a peer.
//
// Owner side: AllocateSharedBuffer() creates the memory; ShmExporter answers "give me the memfd of
// the buffer at address A" over an abstract unix socket (same network namespace, same uid only),
// sending the fd with SCM_RIGHTS. Peer side: ShmPeer connects once, maps each buffer on first use
// and keeps the connection open; the owner's death shows up as a hang-up on it, and Alive() turns
// false, so no copy lands in the memory of a dead process unnoticed.
//
// Peers map buffers by the owner's address, so they must notice when the owner's buffers change
// (a buffer freed and another allocated at the same address): the exporter keeps a generation
// counter in a small shared page that every peer maps read-only, bumped on every change of the
// owner's registrations. A peer compares it before copying and re-reads the owner's descriptor
// (dropping its mappings) when it moved.
#ifndef MOONCAKE_TRANSFER_SHM_SHARED_MEMORY_H_
#define MOONCAKE_TRANSFER_SHM_SHARED_MEMORY_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "mooncake/net/connection_server.h"
#include "mooncake/transfer/memory_registry.h"

namespace mooncake {

struct SharedBuffer {
  void* addr = nullptr;
  uint64_t length = 0;
  int fd = -1;  // memfd; closed by FreeSharedBuffer
};

// AllocateSharedBuffer creates a memfd of `length` bytes and maps it. With `populate`, every page
// is allocated up front (a storage pool should not pay first-touch faults on the data path);
// without, pages are allocated on first write.
absl::StatusOr<SharedBuffer> AllocateSharedBuffer(uint64_t length, const std::string& name,
                                                  bool populate = false);
void FreeSharedBuffer(const SharedBuffer& buffer);

class ShmExporter {
 public:
  // With a non-empty `auth_token` (MC_AUTH_TOKEN) a peer must present it before anything else.
  explicit ShmExporter(const MemoryRegistry* registry, std::string auth_token = "");
  ~ShmExporter();
  // Start listens on abstract socket "@<name>".
  absl::Status Start(const std::string& name);
  void Stop();
  const std::string& name() const { return name_; }
  // BumpGeneration tells peers that the owner's buffers changed.
  void BumpGeneration();
  // Peers refused for a missing or wrong token.
  uint64_t auth_refusals() const { return auth_refusals_.load(); }
  // Handshake connections still being served.
  int serving() const { return server_.serving(); }

 private:
  void Serve(int fd);

  const MemoryRegistry* const registry_;
  const std::string auth_token_;
  std::string name_;
  std::atomic<uint64_t> auth_refusals_{0};
  SharedBuffer control_;  // one page; a std::atomic<uint64_t> generation at offset 0
  ConnectionServer server_;
};

class ShmPeer {
 public:
  // Connect opens the handshake connection to an owner's exporter socket, presenting
  // `auth_token` first when it is not empty.
  static absl::StatusOr<std::unique_ptr<ShmPeer>> Connect(const std::string& socket_name,
                                                          const std::string& auth_token = "");
  ~ShmPeer();

  // Alive is false once the owner closed the connection (exited, crashed, or stopped exporting).
  bool Alive();

  // Generation is the owner's current buffer generation (see the file comment).
  uint64_t Generation() const;

  // Translate returns the local address of remote [addr, addr + length), which must lie wholly
  // inside the owner's buffer that starts at `buffer_addr` with `buffer_length` bytes, mapping the
  // buffer on first use.
  absl::StatusOr<char*> Translate(uint64_t buffer_addr, uint64_t buffer_length, uint64_t addr,
                                  uint64_t length);

 private:
  explicit ShmPeer(int fd) : fd_(fd) {}
  absl::StatusOr<int> RequestFd(uint64_t buffer_addr, uint64_t* length)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Authenticate(const std::string& token) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct Mapping {
    char* base;
    uint64_t length;
  };
  const int fd_;
  const void* control_ = nullptr;  // the owner's generation page, mapped read-only
  absl::Mutex mu_;
  std::map<uint64_t, Mapping> mappings_ ABSL_GUARDED_BY(mu_);  // by owner's buffer address
  bool dead_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_SHM_SHARED_MEMORY_H_
