#include "mooncake/transfer/tcp/tcp_control.h"

#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {

void AppendAuthFrame(const std::string& token, FrameHeader* header, std::vector<iovec>* iov) {
  if (token.empty()) return;
  header->op = FrameOp::kAuth;
  header->length = token.size();
  iov->push_back({header, sizeof(*header)});
  iov->push_back({const_cast<char*>(token.data()), token.size()});
}

absl::Status ControlCallInto(const std::string& host, int port, FrameOp op,
                             const std::string& payload, absl::Duration timeout,
                             const std::string& auth_token, const ControlReplySink& sink) {
  absl::StatusOr<int> fd = ConnectTcp(host, port, timeout);
  if (!fd.ok()) return fd.status();
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)) + 1, 0};
  setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  FrameHeader req;
  req.op = op;
  req.request_id = 1;
  req.length = payload.size();
  FrameHeader auth;
  std::vector<iovec> iov;
  AppendAuthFrame(auth_token, &auth, &iov);
  iov.push_back({&req, sizeof(req)});
  iov.push_back({const_cast<char*>(payload.data()), payload.size()});
  absl::Status s = SendAll(*fd, iov.data(), static_cast<int>(iov.size()));
  FrameHeader resp;
  if (s.ok()) s = RecvAll(*fd, &resp, sizeof(resp));
  if (s.ok()) s = resp.Validate();
  const FrameOp want = static_cast<FrameOp>(static_cast<uint8_t>(op) | 0x80);
  // A refused token is answered with AUTH_REPLY (an error) instead of the reply.
  const bool refused = resp.op == FrameOp::kAuthReply && resp.status != 0;
  if (s.ok() && resp.op != want && !refused) s = absl::DataLossError("unexpected control reply");
  if (s.ok() && resp.status != 0) {
    std::string message(resp.length, '\0');
    s = RecvAll(*fd, message.data(), message.size());
    if (s.ok()) {
      s = MakeError(ErrorCodeFromInt(resp.status).value_or(ErrorCode::INTERNAL_ERROR), message);
    }
  } else if (s.ok()) {
    s = sink(*fd, resp.length);
  }
  close(*fd);
  return s;
}

absl::StatusOr<std::string> ControlCall(const std::string& host, int port, FrameOp op,
                                        const std::string& payload, absl::Duration timeout,
                                        const std::string& auth_token) {
  std::string reply;
  absl::Status s =
      ControlCallInto(host, port, op, payload, timeout, auth_token, [&](int fd, uint64_t n) {
        reply.resize(n);
        return RecvAll(fd, reply.data(), n);
      });
  if (!s.ok()) return s;
  return reply;
}

}  // namespace mooncake
