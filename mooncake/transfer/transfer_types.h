// Types shared by the TransferEngine and its transports.
#ifndef MOONCAKE_TRANSFER_TRANSFER_TYPES_H_
#define MOONCAKE_TRANSFER_TRANSFER_TYPES_H_

#include <cstdint>

namespace mooncake {

// SegmentId names an opened remote segment inside one TransferEngine.
using SegmentId = uint64_t;

// TransferRequest is one one-sided operation between a local registered buffer and an address in a
// remote segment. READ copies remote -> local; WRITE copies local -> remote.
struct TransferRequest {
  enum class Opcode : uint8_t { kRead = 0, kWrite = 1 };
  Opcode opcode = Opcode::kRead;
  void* local = nullptr;     // inside a buffer registered with RegisterLocalMemory
  SegmentId segment = 0;     // from OpenSegment
  uint64_t remote_addr = 0;  // absolute address inside one of the segment's registered buffers
  uint64_t length = 0;
  // If not 0, the segment's process must be this one (SegmentDescriptor::instance): a replica
  // placed in an earlier incarnation fails with INVALID_REPLICA instead of reading new memory.
  uint64_t segment_instance = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TRANSFER_TYPES_H_
