// TcpDataServer: the passive side of the TCP transport. Peers connect once and keep the connection
// (no socket per transfer); each connection is served by its own thread, in request order.
//
// Every WRITE and READ is checked against the MemoryRegistry (remote-accessible buffers only)
// before a byte moves; payloads go straight between the socket and the registered memory, with no
// staging copy. The buffer is pinned, not locked, while its bytes move, so a slow peer never holds
// up registration. A bad range gets an error response and changes nothing; a malformed header
// closes only that connection. Also answers GET_DESC (the P2P handshake) and RDMA rail handshakes.
//
// Fencing: a connection names itself with a HELLO token. FENCE(token), sent on another connection
// by the peer whose lane broke, returns only once no further byte of that connection can land in
// memory: WRITE payloads are applied in chunks, each under the connection's apply lock and only if
// it is not fenced. FenceAll does the same for every open connection. See tcp_transport.h.
//
// Memory: control payloads are read into memory charged to a budget (control_budget_bytes), so
// peers cannot make the server allocate more than that however many connections they open.
#ifndef MOONCAKE_TRANSFER_TCP_TCP_DATA_SERVER_H_
#define MOONCAKE_TRANSFER_TCP_TCP_DATA_SERVER_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "mooncake/net/connection_server.h"
#include "mooncake/net/memory_budget.h"
#include "mooncake/transfer/memory_registry.h"
#include "mooncake/transfer/tcp/tcp_frame.h"

namespace mooncake {

struct TcpDataServerOptions {
  // Limits that keep a misbehaving client from exhausting the server.
  int max_connections = 4096;
  uint64_t control_budget_bytes = 64 << 20;
  // A peer stalled mid-frame this long is dropped (idle between frames is fine).
  int mid_frame_timeout_seconds = 60;
  // The shared secret (MC_AUTH_TOKEN) every connection must present first; "" = anyone may
  // connect (see tcp_frame.h, AUTH).
  std::string auth_token;
};

class TcpDataServer {
 public:
  // ServiceFn answers a SERVICE request by streaming its reply. An error before Begin becomes an
  // error reply; after Begin (or a reply cut short) the connection is closed, so the caller sees
  // the reply fail, never a short one.
  using ServiceFn = std::function<absl::Status(const std::string& payload, ControlReplyStream&)>;
  // ControlFn answers a control request (GET_DESC, RDMA_HS) with the reply payload or an error.
  using ControlFn =
      std::function<absl::StatusOr<std::string>(FrameOp op, const std::string& payload)>;
  // FaultHook (tests only) runs before the payload of every WRITE frame is applied, on the
  // connection's thread, with no lock held: a test can stall one write there.
  using FaultHook = std::function<void(const FrameHeader&)>;

  TcpDataServer(const MemoryRegistry* registry, ControlFn control,
                TcpDataServerOptions options = TcpDataServerOptions());
  ~TcpDataServer();
  TcpDataServer(const TcpDataServer&) = delete;
  TcpDataServer& operator=(const TcpDataServer&) = delete;

  // Start binds host:port (0 = ephemeral) and starts accepting.
  absl::Status Start(const std::string& host, int port);
  int port() const { return server_.port(); }
  // Stop closes the listener and every connection and joins their threads. Idempotent.
  void Stop() { server_.Stop(); }

  // FenceAll fences every open connection (see the file comment).
  void FenceAll();
  const MemoryBudget& control_budget() const { return budget_; }
  // Connections refused for a missing or wrong token.
  uint64_t auth_refusals() const { return auth_refusals_.load(); }
  void SetFaultHookForTesting(FaultHook hook);
  // SetServiceFn installs the SERVICE handler (before Start); without one SERVICE goes to
  // ControlFn.
  void SetServiceFn(ServiceFn fn) { service_ = std::move(fn); }

 private:
  struct Connection;
  void Serve(int fd);
  // Handlers return false when the connection must be closed.
  bool HandleWrite(Connection* conn, const FrameHeader& h);
  bool HandleRead(int fd, const FrameHeader& h);
  bool HandleControl(int fd, const FrameHeader& h);
  bool HandleServiceStream(int fd, const FrameHeader& h, const std::string& payload);
  bool HandleHello(Connection* conn);
  // Authenticate reads and answers the first frame of a connection when the server has a token:
  // true when it was a matching AUTH; otherwise the error reply went out and the connection must
  // close.
  bool Authenticate(int fd);
  bool SendError(int fd, const FrameHeader& request, FrameOp op, const absl::Status& status);
  // Fence marks the connection named `token` fenced (or remembers the token, should its HELLO
  // still be on its way) and waits until it applies nothing more.
  void Fence(uint64_t token);
  void FenceLocked(Connection* conn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const MemoryRegistry* const registry_;
  const ControlFn control_;
  ServiceFn service_;  // set before Start, constant afterwards
  const TcpDataServerOptions options_;
  MemoryBudget budget_;
  absl::Mutex mu_;
  std::set<Connection*> connections_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Connection*> by_token_ ABSL_GUARDED_BY(mu_);
  // Tokens fenced before their connection said HELLO, oldest first (bounded).
  std::set<uint64_t> fenced_tokens_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> fenced_order_ ABSL_GUARDED_BY(mu_);
  FaultHook fault_hook_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> auth_refusals_{0};
  ConnectionServer server_;
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TCP_TCP_DATA_SERVER_H_
