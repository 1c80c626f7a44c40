// TcpDataServer: the passive side of the TCP transport. Peers connect once and keep the connection
// (no socket per transfer); each connection is served by its own thread, in request order.
//
// Every WRITE and READ is checked against the MemoryRegistry (remote-accessible buffers only)
// before a byte moves; payloads go straight between the socket and the registered memory, with no
// staging copy. A bad range gets an error response and changes nothing; a malformed header closes
// only that connection. Also answers GET_DESC, the P2P handshake.
#ifndef MOONCAKE_TRANSFER_TCP_TCP_DATA_SERVER_H_
#define MOONCAKE_TRANSFER_TCP_TCP_DATA_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mooncake/net/connection_server.h"
#include "mooncake/transfer/memory_registry.h"
#include "mooncake/transfer/tcp/tcp_frame.h"

namespace mooncake {

class TcpDataServer {
 public:
  // ControlFn answers a control request (GET_DESC, RDMA_HS) with the reply payload or an error.
  using ControlFn =
      std::function<absl::StatusOr<std::string>(FrameOp op, const std::string& payload)>;

  // Limits that keep a misbehaving client from exhausting the server.
  static constexpr int kMaxConnections = 4096;

  TcpDataServer(const MemoryRegistry* registry, ControlFn control);
  ~TcpDataServer();
  TcpDataServer(const TcpDataServer&) = delete;
  TcpDataServer& operator=(const TcpDataServer&) = delete;

  // Start binds host:port (0 = ephemeral) and starts accepting.
  absl::Status Start(const std::string& host, int port);
  int port() const { return server_.port(); }
  // Stop closes the listener and every connection and joins their threads. Idempotent.
  void Stop() { server_.Stop(); }

 private:
  void Serve(int fd);
  // Handlers return false when the connection must be closed.
  bool HandleWrite(int fd, const FrameHeader& h);
  bool HandleRead(int fd, const FrameHeader& h);
  bool HandleControl(int fd, const FrameHeader& h);
  bool SendError(int fd, const FrameHeader& request, FrameOp op, const absl::Status& status);

  const MemoryRegistry* const registry_;
  const ControlFn control_;
  ConnectionServer server_;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TCP_TCP_DATA_SERVER_H_
