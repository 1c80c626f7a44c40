// Fast RPC: a lean binary protocol for the master's hot per-key calls (exist, get-replica-list,
// put-start, put-end, put-revoke), beside gRPC, which stays the full API. A store client learns
// the port from its first heartbeat and keeps a few persistent connections; a request is one
// frame and one reply, with no HTTP/2, protobuf or thread hop in between. On any transport error
// the client falls back to gRPC for that call, so the two paths give the same results.
//
// Frame: {u32 magic "MCFR", u8 op, u8 version, u16 zero, u32 payload length} + payload, little
// endian. Reply ops are op | 0x80; a reply payload starts with an i32 batch code (0, or the
// ErrorCode that rejected the whole call, followed by its message). Payloads are bounded
// (kMaxFastRpcPayload) and so is the memory all connections' requests hold together
// (request_budget_bytes: past it a request is refused with RPC_FAIL, never queued); a malformed
// frame closes that connection only.
//
// Access control (common/auth_token.h): a server with a token expects AUTH (payload: the token) as
// the first frame of every connection and does not answer it when it matches. A wrong token, or
// any other first frame, is answered with that frame's reply op carrying INVALID_PARAMS, and the
// connection closes.
#ifndef MOONCAKE_MASTER_FAST_RPC_H_
#define MOONCAKE_MASTER_FAST_RPC_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mooncake/master/master_gate.h"
#include "mooncake/master/master_service.h"
#include "mooncake/master/master_types.h"
#include "mooncake/net/connection_server.h"
#include "mooncake/net/memory_budget.h"

namespace mooncake {

// kFastRpcVersion is the frame version (2: replicas carry the disk flag); others are refused.
inline constexpr uint8_t kFastRpcVersion = 2;
inline constexpr uint32_t kMaxFastRpcPayload = 64u << 20;

enum class FastRpcOp : uint8_t {
  kExist = 1,
  kGetReplicaList = 2,
  kPutStart = 3,
  kPutEnd = 4,
  kPutRevoke = 5,
  kAuth = 6,
};

struct FastRpcServerOptions {
  int max_connections = 1024;
  uint64_t request_budget_bytes = 256 << 20;
  std::string auth_token;  // MC_AUTH_TOKEN; "" = anyone may call
};

// FastRpcServer serves the protocol for a MasterService, one thread per connection.
class FastRpcServer {
 public:
  // `gate` (master_gate.h), if set, admits and settles every call.
  explicit FastRpcServer(MasterService* service,
                         FastRpcServerOptions options = FastRpcServerOptions(),
                         MasterGate* gate = nullptr);
  // Start binds host:port (0 = ephemeral).
  absl::Status Start(const std::string& host, int port) { return server_.Start(host, port); }
  int port() const { return server_.port(); }
  void Stop() { server_.Stop(); }
  const MemoryBudget& request_budget() const { return budget_; }
  // Connections refused for a missing or wrong token.
  uint64_t auth_refusals() const { return auth_refusals_.load(); }

 private:
  void Serve(int fd);
  // With a token: reads the connection's first frame by a deadline; false = refused or gone.
  bool AuthenticateFirstFrame(int fd);
  // Sends the auth error as the reply to `op` and drains the connection before it is closed.
  void Refuse(int fd, uint8_t op);

  MasterService* const service_;
  MasterGate* const gate_;
  const std::string auth_token_;
  std::atomic<uint64_t> auth_refusals_{0};
  MemoryBudget budget_;
  ConnectionServer server_;
};

// FastRpcClient calls a FastRpcServer over pooled persistent connections. Thread-safe. A call
// returns the master's batch rejection as an error carrying its ErrorCode; when the transport
// fails it returns UNAVAILABLE if the request never left (NotSent: safe to send again anywhere)
// and ABORTED if it may have run (only calls safe to repeat may then be sent again).
class FastRpcClient {
 public:
  // TransportFailed: the call failed in transport (either kind above), not at the master.
  static bool TransportFailed(const absl::Status& s) {
    return absl::IsUnavailable(s) || absl::IsAborted(s);
  }
  static bool NotSent(const absl::Status& s) { return absl::IsUnavailable(s); }

  // A non-empty `auth_token` is presented on every connection.
  FastRpcClient(std::string host, int port, absl::Duration timeout, std::string auth_token = "");
  ~FastRpcClient();

  // Codes runs a per-key call that answers one code per key; put_ids (put-end, put-revoke) may be
  // empty; `quarantine` is put-revoke's.
  absl::StatusOr<std::vector<ErrorCode>> Codes(FastRpcOp op, absl::Span<const std::string> keys,
                                               absl::Span<const uint64_t> put_ids = {},
                                               bool quarantine = false);
  absl::StatusOr<ReplicaListResult> GetReplicaList(absl::Span<const std::string> keys);
  absl::StatusOr<std::vector<ObjectReplicas>> PutStart(absl::Span<const std::string> keys,
                                                       absl::Span<const uint64_t> sizes,
                                                       const ReplicateConfig& config,
                                                       absl::Span<const uint64_t> put_ids = {});

 private:
  // Call sends one request and returns the reply payload after its batch code (0).
  absl::StatusOr<std::string> Call(FastRpcOp op, const std::string& payload);
  absl::StatusOr<int> Acquire();
  void Release(int fd, bool healthy);

  const std::string host_;
  const int port_;
  const absl::Duration timeout_;
  const std::string auth_token_;
  absl::Mutex mu_;
  std::vector<int> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_FAST_RPC_H_
