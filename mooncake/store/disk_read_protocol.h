// The SSD tier's read request (docs/ssd_tier.md): a reader whose object has only a disk copy asks
// the process holding it, over the transfer engine's control channel (TransferEngine::CallService),
// for byte ranges of one or more objects; the reply carries them. One request per holder per
// batch, split so a reply stays under kMaxDiskReadReply.
//
//   request  u32 magic "MCDQ", u32 count, then per item: u32 key length, key, u64 offset,
//            u64 length
//   reply    each item's `length` bytes in order (a failed item's are zero), then u32 count and
//            an i32 code per item (0 or an ErrorCode): the holder sends each object as soon as
//            it is read, and the codes once all are
#ifndef MOONCAKE_STORE_DISK_READ_PROTOCOL_H_
#define MOONCAKE_STORE_DISK_READ_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mooncake/common/error_code.h"
#include "mooncake/transfer/tcp/tcp_frame.h"

namespace mooncake {

// The reply of one request holds at most this many bytes (a control frame's limit).
inline constexpr uint64_t kMaxDiskReadReply = FrameHeader::kMaxControlPayload - (64 << 10);
inline constexpr uint32_t kMaxDiskReadItems = 4096;

struct DiskReadItem {
  std::string key;
  uint64_t offset = 0;
  uint64_t length = 0;
};

std::string EncodeDiskReadRequest(const std::vector<DiskReadItem>& items);
// DecodeDiskReadRequest checks every bound (item count, key length, reply size): a malformed or
// oversized request is INVALID_PARAMS and nothing is read.
absl::StatusOr<std::vector<DiskReadItem>> DecodeDiskReadRequest(absl::string_view request);

// DiskReadReplySize is the reply's length: the items' bytes, then the codes.
uint64_t DiskReadReplySize(const std::vector<DiskReadItem>& items);
inline uint64_t DiskReadReplyTrailerSize(size_t count) {
  return 4 + 4 * static_cast<uint64_t>(count);
}
// EncodeDiskReadReplyTrailer / ParseDiskReadReplyTrailer: the codes after the bytes.
std::string EncodeDiskReadReplyTrailer(const std::vector<ErrorCode>& codes);
absl::StatusOr<std::vector<ErrorCode>> ParseDiskReadReplyTrailer(
    const std::vector<DiskReadItem>& items, absl::string_view trailer);

}  // namespace mooncake

#endif  // MOONCAKE_STORE_DISK_READ_PROTOCOL_H_
