// ControlCall: one request/reply exchange with a peer's TcpDataServer on a fresh connection, for
// the rare control operations (P2P descriptor fetch, RDMA rail handshake). Data never uses this.
#ifndef MOONCAKE_TRANSFER_TCP_TCP_CONTROL_H_
#define MOONCAKE_TRANSFER_TCP_TCP_CONTROL_H_

#include <sys/uio.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mooncake/transfer/tcp/tcp_frame.h"

namespace mooncake {

// ControlCall sends `op` with `payload` to host:port and returns the reply payload. A peer's error
// reply comes back as a status carrying the peer's ErrorCode and message. A non-empty
// `auth_token` is presented first (tcp_frame.h, AUTH).
absl::StatusOr<std::string> ControlCall(const std::string& host, int port, FrameOp op,
                                        const std::string& payload, absl::Duration timeout,
                                        const std::string& auth_token);

// ControlCallInto is ControlCall with the reply payload handed to `sink` straight off the socket
// (fd, payload length): the sink must read exactly that many bytes. Large replies (disk reads)
// then land where they belong with no staging copy.
using ControlReplySink = std::function<absl::Status(int fd, uint64_t length)>;
absl::Status ControlCallInto(const std::string& host, int port, FrameOp op,
                             const std::string& payload, absl::Duration timeout,
                             const std::string& auth_token, const ControlReplySink& sink);

// AuthFrame appends to `iov` the AUTH frame that presents `token` (nothing when it is empty);
// `header` must outlive the send.
void AppendAuthFrame(const std::string& token, FrameHeader* header, std::vector<iovec>* iov);

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TCP_TCP_CONTROL_H_
