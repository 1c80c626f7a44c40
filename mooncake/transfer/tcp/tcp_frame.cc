#include "mooncake/transfer/tcp/tcp_frame.h"

#include "absl/strings/str_format.h"
#include "mooncake/common/auth_token.h"

namespace mooncake {

absl::Status FrameHeader::Validate() const {
  if (magic != kMagic) return absl::DataLossError(absl::StrFormat("bad frame magic %#x", magic));
  if (version != kVersion) {
    return absl::DataLossError(absl::StrFormat("unsupported frame version %d", version));
  }
  uint64_t limit = kMaxControlPayload;
  switch (op) {
    case FrameOp::kWrite:
    case FrameOp::kReadData:
      limit = kMaxPayload;
      break;
    case FrameOp::kRead:
      // The payload travels back; the request itself carries none.
      if (length > kMaxPayload) {
        return absl::DataLossError(absl::StrFormat(
            "read of %u bytes exceeds the %u-byte frame limit", length, kMaxPayload));
      }
      return absl::OkStatus();
    case FrameOp::kGetDescriptor:
      limit = 0;
      break;
    case FrameOp::kHello:
    case FrameOp::kFence:
      if (length != sizeof(uint64_t)) {
        return absl::DataLossError("hello and fence frames carry one 8-byte token");
      }
      return absl::OkStatus();
    case FrameOp::kAuth:
      if (length == 0 || length > kMaxAuthTokenBytes) {
        return absl::DataLossError("auth frames carry a token of 1 to 256 bytes");
      }
      return absl::OkStatus();
    case FrameOp::kFenceReply:
    case FrameOp::kAuthReply:
      limit = kMaxErrorPayload;
      break;
    case FrameOp::kRdmaHandshake:
    case FrameOp::kDescriptor:
    case FrameOp::kRdmaHandshakeReply:
    case FrameOp::kService:
    case FrameOp::kServiceReply:
      break;
    case FrameOp::kWriteAck:
      limit = kMaxErrorPayload;
      break;
    default:
      return absl::DataLossError(absl::StrFormat("unknown frame opcode %d", static_cast<int>(op)));
  }
  if (length > limit) {
    return absl::DataLossError(
        absl::StrFormat("frame payload of %u bytes exceeds the %u-byte limit", length, limit));
  }
  return absl::OkStatus();
}

}  // namespace mooncake
