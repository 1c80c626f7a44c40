#include "mooncake/transfer/tcp/tcp_control.h"

#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {

absl::StatusOr<std::string> ControlCall(const std::string& host, int port, FrameOp op,
                                        const std::string& payload, absl::Duration timeout) {
  absl::StatusOr<int> fd = ConnectTcp(host, port, timeout);
  if (!fd.ok()) return fd.status();
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)) + 1, 0};
  setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  FrameHeader req;
  req.op = op;
  req.request_id = 1;
  req.length = payload.size();
  iovec iov[2] = {{&req, sizeof(req)}, {const_cast<char*>(payload.data()), payload.size()}};
  absl::Status s = SendAll(*fd, iov, 2);
  FrameHeader resp;
  if (s.ok()) s = RecvAll(*fd, &resp, sizeof(resp));
  if (s.ok()) s = resp.Validate();
  const FrameOp want = static_cast<FrameOp>(static_cast<uint8_t>(op) | 0x80);
  if (s.ok() && resp.op != want) s = absl::DataLossError("unexpected control reply");
  std::string reply;
  if (s.ok()) {
    reply.resize(resp.length);
    s = RecvAll(*fd, reply.data(), reply.size());
  }
  close(*fd);
  if (!s.ok()) return s;
  if (resp.status != 0) {
    return MakeError(ErrorCodeFromInt(resp.status).value_or(ErrorCode::INTERNAL_ERROR), reply);
  }
  return reply;
}

}  // namespace mooncake
