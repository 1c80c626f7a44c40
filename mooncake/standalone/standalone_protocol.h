// The standalone protocol: how a process that set up with `setup_dummy` (StandaloneClient) asks
// the storage process on its host (`mooncake_client`, StandaloneServer) to do its store calls.
// docs/standalone.md describes it; the invariants the code relies on are here.
//
// Transport: an abstract unix socket, "@mooncake_client.<port>" for `mooncake_client --port=P`
// (so the client_server_address "127.0.0.1:P" SGLang passes names it), same host and network
// namespace only; the server admits only its own uid (and root). Each connection carries one call
// at a time: a request frame, then its reply frame.
//
// Frame: 12-byte header {u32 magic "MCSA", u8 op, u8 version, u16 zero, u32 payload length}, then
// the payload (mooncake/net/wire.h encoding). A kMap request carries a memfd (SCM_RIGHTS) with its
// header. Requests carry only metadata, never object bytes: bytes move through memory both
// processes map (the caller's HostMemAllocator blocks, or the client's staging block), named by
// Pieces (region, offset, length). A request over kMaxRequestBytes, a bad magic or version, or a
// payload that does not decode closes the connection; nothing else changes.
//
// Reply payload: i32 status (0, or a negative ErrorCode when the whole call failed), then the
// op's results.
#ifndef MOONCAKE_STANDALONE_STANDALONE_PROTOCOL_H_
#define MOONCAKE_STANDALONE_STANDALONE_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mooncake/net/wire.h"

namespace mooncake {

constexpr uint8_t kStandaloneVersion = 1;
constexpr uint32_t kMaxStandaloneRequestBytes = 64u << 20;
// Bounds the server enforces per request.
constexpr uint32_t kMaxStandaloneKeys = 1u << 16;
constexpr uint32_t kMaxPiecesPerKey = 4096;
constexpr uint32_t kMaxRegionsPerConnection = 4096;

enum class StandaloneOp : uint8_t {
  // -> u32 pid.  <- str hostname (the storage process's segment name), u32 pid.
  kHello = 1,
  // memfd attached; -> u64 length.  <- u64 region id (valid on this connection).
  kMap = 2,
  // -> u64 region id.  <- nothing.
  kUnmap = 3,
  // -> keys.  <- i32 per key.
  kExist = 4,
  // -> ReplicateConfig, key pieces.  <- i32 per key.
  kPut = 5,
  // -> key pieces.  <- i64 per key.
  kGet = 6,
  // -> str key.  <- i64.
  kSize = 7,
  // -> keys, u8 force.  <- i32 per key.
  kRemove = 8,
  // -> str regex, u8 force.  <- i64.
  kRemoveRegex = 9,
  // -> u8 force.  <- i64.
  kRemoveAll = 10,
  // -> keys.  <- ObjectReplicas list (master_wire.h).
  kReplicas = 11,
  // ->.  <- i32 StoreHealth of the storage process.
  kHealth = 12,
};

// Piece: `length` bytes at `offset` in mapped region `region`.
struct Piece {
  uint64_t region = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct KeyPieces {
  std::string key;
  std::vector<Piece> pieces;
};

// StandaloneSocketName maps the address a user gives ("host:port", as Mooncake's
// client_server_address, or just a port) to the abstract socket name the server listens on.
absl::StatusOr<std::string> StandaloneSocketName(absl::string_view address);
std::string StandaloneSocketNameForPort(int port);

// WriteFrame sends one frame, with `pass_fd` attached when >= 0.
absl::Status WriteFrame(int sock, StandaloneOp op, absl::string_view payload, int pass_fd = -1);
// ReadFrame receives one frame of at most `max_payload` bytes; a descriptor that came with it
// lands in *received_fd (else -1; the caller owns it).
absl::Status ReadFrame(int sock, uint32_t max_payload, StandaloneOp* op, std::string* payload,
                       int* received_fd);

void EncodeKeys(const std::vector<std::string>& keys, WireWriter& w);
bool DecodeKeys(WireReader& r, std::vector<std::string>* keys);
void EncodeKeyPieces(const std::vector<KeyPieces>& keys, WireWriter& w);
bool DecodeKeyPieces(WireReader& r, std::vector<KeyPieces>* keys);

}  // namespace mooncake

#endif  // MOONCAKE_STANDALONE_STANDALONE_PROTOCOL_H_
