// StandaloneServer: the storage process's side of standalone mode (standalone_protocol.h). It
// serves the store calls of the processes on this host that set up with `setup_dummy`, running
// each on its own StoreApi (the StoreClient that holds the segment), and maps the memory those
// processes hand it (their HostMemAllocator blocks) so their buffers are read and written in
// place.
//
//   StandaloneServer server(store.get());
//   server.Start(StandaloneSocketNameForPort(50052));
//
// Invariants:
// - A mapped region stays mapped and registered with the store while any connection holds it;
//   the same memfd (same inode) handed over by several connections is mapped once.
// - A region is accepted only if its memfd is sealed against shrinking (F_SEAL_SHRINK), so a
//   client cannot turn the server's accesses into SIGBUS by truncating it.
// - Every piece is checked against its region before the store sees it; a bad piece fails its
//   key alone with INVALID_PARAMS.
// - A connection's calls run one at a time on its thread, so when it closes (its process exited
//   or crashed) no call of its is in flight and its regions are released at once.
#ifndef MOONCAKE_STANDALONE_STANDALONE_SERVER_H_
#define MOONCAKE_STANDALONE_STANDALONE_SERVER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "mooncake/net/connection_server.h"
#include "mooncake/standalone/standalone_protocol.h"
#include "mooncake/store/store_api.h"

namespace mooncake {

struct StandaloneServerStats {
  uint64_t connections = 0;          // accepted so far
  uint64_t refused_connections = 0;  // another uid
  uint64_t calls = 0;
  uint64_t bad_requests = 0;  // malformed frames (the connection was closed)
  uint64_t regions = 0;       // mapped now
  uint64_t mapped_bytes = 0;  // now
};

class StandaloneServer {
 public:
  // `store` must outlive the server.
  explicit StandaloneServer(StoreApi* store, int max_connections = 256);
  ~StandaloneServer();
  StandaloneServer(const StandaloneServer&) = delete;
  StandaloneServer& operator=(const StandaloneServer&) = delete;

  // Start listens on the abstract unix socket "@<socket_name>" (EADDRINUSE when another server
  // has it).
  absl::Status Start(const std::string& socket_name);
  // Stop closes every connection and waits for their calls to finish.
  void Stop();

  StandaloneServerStats GetStats() const;

 private:
  struct Region;
  struct Connection;
  void Serve(int fd);
  // Handle runs one request; false closes the connection (malformed input).
  bool Handle(Connection& conn, StandaloneOp op, absl::string_view payload, int received_fd,
              std::string* reply);
  absl::StatusOr<std::shared_ptr<Region>> MapRegion(int fd, uint64_t length);
  // Translate turns pieces into the store's buffers; false if any piece is bad.
  bool Translate(const Connection& conn, const KeyPieces& key, std::vector<BufferRef>* out) const;

  StoreApi* const store_;
  ConnectionServer server_;
  mutable absl::Mutex mu_;
  // Mapped regions by memfd inode; entries expire with their last holder.
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<Region>> regions_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> bad_requests_{0};
  std::atomic<uint64_t> region_count_{0};
  std::atomic<uint64_t> mapped_bytes_{0};
};

}  // namespace mooncake

#endif  // MOONCAKE_STANDALONE_STANDALONE_SERVER_H_
