// Small blocking-socket helpers for every TCP server and client here (the TCP transport, the
// master's fast RPC, the metadata clients): listen, connect with a timeout, and send or receive
// whole buffers (looping over partial writes and EINTR).
#ifndef MOONCAKE_NET_SOCKET_UTIL_H_
#define MOONCAKE_NET_SOCKET_UTIL_H_

#include <sys/uio.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mooncake {

// ListenTcp binds host:port (port 0 = ephemeral) and listens; *bound_port receives the real port.
// Binds exactly the given host (a name is resolved); never widens to all interfaces.
absl::StatusOr<int> ListenTcp(const std::string& host, int port, int* bound_port);

// ConnectTcp connects to host:port within `timeout`, with TCP_NODELAY set.
absl::StatusOr<int> ConnectTcp(const std::string& host, int port, absl::Duration timeout);

// ListenUnixAbstract binds and listens on the abstract unix socket "@<name>" (Linux: no file,
// gone when the listener closes; visible only inside this network namespace).
absl::StatusOr<int> ListenUnixAbstract(const std::string& name);

// ConnectUnixAbstract connects to "@<name>".
absl::StatusOr<int> ConnectUnixAbstract(const std::string& name);

// SendWithFd writes all `length` bytes (one sendmsg; for small messages) with `pass_fd` attached
// by SCM_RIGHTS when it is >= 0.
absl::Status SendWithFd(int sock, const void* data, size_t length, int pass_fd);

// RecvWithFd reads exactly `length` bytes; a descriptor passed with them lands in *received_fd
// (close-on-exec; -1 when none came).
absl::Status RecvWithFd(int sock, void* data, size_t length, int* received_fd);

// SocketErrno is the errno behind a status these helpers returned (ECONNREFUSED, ...), or 0.
int SocketErrno(const absl::Status& status);

// SendAll writes every byte of the iovecs (modified in place). Errors carry errno's text.
absl::Status SendAll(int fd, struct iovec* iov, int iovcnt);
absl::Status SendAll(int fd, const void* data, size_t length);

// RecvAll reads exactly `length` bytes. A closed connection is an error ("connection closed").
absl::Status RecvAll(int fd, void* data, size_t length);

// RecvAllBy is RecvAll that gives up at `deadline` (DeadlineExceeded): for the first frame of a
// peer not yet trusted, which must not hold a connection slot by sending slowly.
// absl::InfiniteFuture() waits as long as RecvAll.
absl::Status RecvAllBy(int fd, void* data, size_t length, absl::Time deadline);

// DiscardBytes reads and drops `length` bytes (to skip a payload that cannot be accepted).
absl::Status DiscardBytes(int fd, uint64_t length);

// FinishRefusal is for a server that has just sent its final (error) reply and will close: it
// shuts its side down and drops what the peer still sends, for at most `max_wait` or until the
// peer closes, so that closing with unread bytes (a TCP reset) does not destroy the reply before
// the peer reads it. The caller still closes the fd.
void FinishRefusal(int fd, int max_wait_ms = 2000);

}  // namespace mooncake

#endif  // MOONCAKE_NET_SOCKET_UTIL_H_
