// The TCP transport's wire format: a fixed 40-byte header, optionally followed by a payload.
//
//   WRITE       client -> server  header + `length` payload bytes, written at `addr`
//   WRITE_ACK   server -> client  header (status; on error, payload = message)
//   READ        client -> server  header: read `length` bytes at `addr`
//   READ_DATA   server -> client  header + `length` bytes (status 0), or an error message payload
//   GET_DESC    client -> server  header: send your segment descriptor (the P2P handshake)
//   DESC        server -> client  header + descriptor JSON
//   RDMA_HS     client -> server  header + EndpointInfo JSON (connect one RDMA rail)
//   RDMA_HS_REPLY                 header + the server's EndpointInfo JSON, or an error message
//   HELLO       client -> server  header + 8-byte token naming the connection (a lane's first
//   frame;
//                                 no reply)
//   FENCE       client -> server  header + a token: apply no more bytes of that connection (on a
//                                 fresh connection, after the lane broke)
//   FENCE_REPLY server -> client  header, once nothing of that connection can land any more
//   SERVICE     client -> server  header + a request for the engine's service handler (the
//                                 store's SSD tier: docs/ssd_tier.md)
//   SERVICE_REPLY                 header + the handler's reply, or an error message
//   AUTH        client -> server  header + the shared secret (MC_AUTH_TOKEN): the first frame of
//                                 every connection to a server that has one; no reply when it
//                                 matches
//   AUTH_REPLY  server -> client  header (error status) + message: the token was missing or wrong;
//                                 the server then closes the connection
//
// A server with a token answers any other first frame with that frame's reply op (AUTH_REPLY for
// HELLO, which has none) carrying an error, and closes; nothing of the request is applied.
//
// Responses echo the request id; on one connection they come in request order. Little-endian hosts
// only (x86-64, aarch64). A header that fails Validate() ends the connection: the stream cannot be
// resynchronized, and no byte of such a request is applied.
#ifndef MOONCAKE_TRANSFER_TCP_TCP_FRAME_H_
#define MOONCAKE_TRANSFER_TCP_TCP_FRAME_H_

#include <cstdint>

#include "absl/status/status.h"

namespace mooncake {

enum class FrameOp : uint8_t {
  kWrite = 1,
  kRead = 2,
  kGetDescriptor = 3,
  kRdmaHandshake = 4,
  kHello = 5,
  kFence = 6,
  kService = 7,
  kAuth = 8,
  kWriteAck = 0x81,
  kReadData = 0x82,
  kDescriptor = 0x83,
  kRdmaHandshakeReply = 0x84,
  kFenceReply = 0x86,
  kServiceReply = 0x87,
  kAuthReply = 0x88,
};

struct FrameHeader {
  static constexpr uint32_t kMagic = 0x4654434d;  // "MCTF"
  static constexpr uint8_t kVersion = 1;
  // One frame moves at most this many payload bytes; the client slices larger requests.
  static constexpr uint64_t kMaxPayload = 256ull << 20;
  // Descriptors and handshakes are much smaller; error messages smaller still.
  static constexpr uint64_t kMaxControlPayload = 16ull << 20;
  static constexpr uint64_t kMaxErrorPayload = 64ull << 10;

  uint32_t magic = kMagic;
  uint8_t version = kVersion;
  FrameOp op = FrameOp::kWrite;
  uint16_t flags = 0;
  int32_t status = 0;  // ErrorCode, in responses
  uint32_t reserved = 0;
  uint64_t request_id = 0;
  uint64_t addr = 0;
  uint64_t length = 0;  // payload bytes that follow this header

  // Validate checks magic, version, opcode and payload bounds.
  absl::Status Validate() const;
};
static_assert(sizeof(FrameHeader) == 40, "wire header is 40 bytes");

// ControlReplyStream sends one control reply in pieces: Begin(length) once, then Write until
// `length` bytes went (a disk read sends each object as soon as it is read).
class ControlReplyStream {
 public:
  virtual ~ControlReplyStream() = default;
  virtual absl::Status Begin(uint64_t length) = 0;
  virtual absl::Status Write(const void* data, uint64_t n) = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TCP_TCP_FRAME_H_
