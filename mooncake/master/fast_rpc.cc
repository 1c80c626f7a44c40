#include "mooncake/master/fast_rpc.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/master_wire.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/net/wire.h"

namespace mooncake {
namespace {

constexpr uint32_t kMagic = 0x5246434d;  // "MCFR"
constexpr uint8_t kVersion = kFastRpcVersion;

struct Header {
  uint32_t magic = kMagic;
  uint8_t op = 0;
  uint8_t version = kVersion;
  uint16_t zero = 0;
  uint32_t length = 0;
};
static_assert(sizeof(Header) == 12, "wire header is 12 bytes");

bool HeaderValid(const Header& h) {
  return h.magic == kMagic && h.version == kVersion && h.length <= kMaxFastRpcPayload &&
         (h.op != static_cast<uint8_t>(FastRpcOp::kAuth) || h.length <= kMaxAuthTokenBytes);
}

using Writer = WireWriter;
using Reader = WireReader;

std::vector<absl::string_view> ReadKeys(Reader& r) {
  uint32_t n = r.Count(4);
  std::vector<absl::string_view> keys;
  keys.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) keys.push_back(r.Str());
  return keys;
}

void WriteKeys(absl::Span<const std::string> keys, Writer& w) {
  w.U32(static_cast<uint32_t>(keys.size()));
  for (const std::string& k : keys) w.Str(k);
}

void WriteObjects(const std::vector<ObjectReplicas>& objects, Writer& w) {
  EncodeObjectReplicas(objects, w);
}

// Reply payload for a batch-level result: 0 and the body, or the code and its message.
template <typename T, typename Body>
std::string Reply(const absl::StatusOr<T>& result, Body body) {
  Writer w;
  if (!result.ok()) {
    w.I32(static_cast<int32_t>(ToErrorCode(result.status())));
    w.Str(result.status().message());
    return std::move(w.buf());
  }
  w.I32(0);
  body(*result, w);
  return std::move(w.buf());
}

void WriteCodes(const std::vector<ErrorCode>& codes, Writer& w) {
  w.U32(static_cast<uint32_t>(codes.size()));
  for (ErrorCode c : codes) w.I32(static_cast<int32_t>(c));
}

// The reply of a call the gate refused or could not settle.
std::string GateReply(const absl::Status& status) {
  return Reply(absl::StatusOr<int>(status), [](int, Writer&) {});
}

// Handle decodes one request and runs it; false on bad input. With a gate (master_gate.h) a
// refused call is answered with the gate's error, and a change only once it settled.
bool Handle(MasterService* service, MasterGate* gate, uint8_t op, absl::string_view payload,
            std::string* reply) {
  Reader r(payload);
  std::vector<absl::string_view> keys = ReadKeys(r);
  if (!r.ok()) return false;
  if (gate != nullptr) {
    if (absl::Status admitted = gate->Admit(); !admitted.ok()) {
      *reply = GateReply(admitted);
      return true;
    }
  }
  auto settle = [&] {
    if (gate == nullptr) return;
    if (absl::Status settled = gate->Settle(); !settled.ok()) *reply = GateReply(settled);
  };
  switch (static_cast<FastRpcOp>(op)) {
    case FastRpcOp::kAuth:  // only as a first frame (Serve)
      return false;
    case FastRpcOp::kExist:
      *reply = Reply(service->BatchExistKey(keys), WriteCodes);
      return true;
    case FastRpcOp::kPutEnd:
    case FastRpcOp::kPutRevoke: {
      std::vector<uint64_t> put_ids(r.Count(8));
      for (uint64_t& id : put_ids) id = r.U64();
      const bool quarantine = r.remaining() > 0 && r.U8() != 0;
      if (!r.ok()) return false;
      *reply = static_cast<FastRpcOp>(op) == FastRpcOp::kPutEnd
                   ? Reply(service->BatchPutEnd(keys, put_ids), WriteCodes)
                   : Reply(service->BatchPutRevoke(keys, put_ids, quarantine), WriteCodes);
      settle();
      return true;
    }
    case FastRpcOp::kGetReplicaList:
      *reply =
          Reply(service->BatchGetReplicaList(keys), [](const ReplicaListResult& res, Writer& w) {
            w.U64(static_cast<uint64_t>(absl::ToInt64Milliseconds(res.lease_ttl)));
            WriteObjects(res.objects, w);
          });
      return true;
    case FastRpcOp::kPutStart: {
      std::vector<uint64_t> sizes(keys.size());
      for (uint64_t& s : sizes) s = r.U64();
      ReplicateConfig config = DecodeReplicateConfig(r);
      std::vector<uint64_t> put_ids(r.remaining() > 0 ? r.Count(8) : 0);
      for (uint64_t& id : put_ids) id = r.U64();
      if (!r.ok()) return false;
      *reply = Reply(service->BatchPutStart(keys, sizes, config, put_ids), WriteObjects);
      settle();
      return true;
    }
  }
  return false;
}

}  // namespace

FastRpcServer::FastRpcServer(MasterService* service, FastRpcServerOptions options, MasterGate* gate)
    : service_(service),
      gate_(gate),
      auth_token_(options.auth_token),
      budget_(options.request_budget_bytes),
      server_("fast rpc", options.max_connections, [this](int fd) { Serve(fd); }) {}

void FastRpcServer::Serve(int fd) {
  std::string payload;
  bool authenticated = auth_token_.empty();
  if (!authenticated && !AuthenticateFirstFrame(fd)) return;
  while (!server_.stopping()) {
    Header h;
    if (!RecvAll(fd, &h, sizeof(h)).ok()) break;
    if (!HeaderValid(h)) {
      MC_LOG(WARNING) << "fast rpc: closing a connection after a malformed frame";
      break;
    }
    // Memory grows only with bytes that arrived, and all requests together stay in the budget.
    MemoryBudget::Reservation held(&budget_);
    absl::Status read = RecvPayload(fd, h.length, &held, &payload);
    std::string reply;
    if (absl::IsResourceExhausted(read)) {
      MC_LOG(WARNING) << "fast rpc: refusing a request: " << read.message();
      reply = Reply(absl::StatusOr<int>(MakeError(ErrorCode::RPC_FAIL,
                                                  absl::StrCat("master busy: ", read.message()))),
                    [](int, Writer&) {});
    } else if (!read.ok()) {
      break;
    } else if (h.op == static_cast<uint8_t>(FastRpcOp::kAuth)) {
      // A repeated token: ignored when right (or when this master has none), refused when wrong.
      if (AuthTokenMatches(auth_token_, payload)) continue;
      Refuse(fd, h.op);
      break;
    } else if (!Handle(service_, gate_, h.op, payload, &reply)) {
      MC_LOG(WARNING) << "fast rpc: closing a connection after a malformed request";
      break;
    }
    Header rh;
    rh.op = h.op | 0x80;
    rh.length = static_cast<uint32_t>(reply.size());
    iovec iov[2] = {{&rh, sizeof(rh)}, {reply.data(), reply.size()}};
    if (!SendAll(fd, iov, 2).ok()) break;
    // A large request's buffer is not kept between requests (the budget no longer counts it).
    if (payload.capacity() > (1 << 20)) std::string().swap(payload);
  }
}

bool FastRpcServer::AuthenticateFirstFrame(int fd) {
  // Before the token, a peer gets one frame, kAuthFrameTimeout and kMaxAuthTokenBytes: no other
  // request's payload is read, so nothing of the budget or a slot is held for long.
  const absl::Time deadline = absl::Now() + kAuthFrameTimeout;
  Header h;
  if (!RecvAllBy(fd, &h, sizeof(h), deadline).ok() || !HeaderValid(h)) return false;
  if (h.op == static_cast<uint8_t>(FastRpcOp::kAuth)) {
    std::string token(h.length, '\0');
    if (!RecvAllBy(fd, token.data(), token.size(), deadline).ok()) return false;
    if (AuthTokenMatches(auth_token_, token)) return true;  // accepted: no reply
  }
  Refuse(fd, h.op);
  return false;
}

void FastRpcServer::Refuse(int fd, uint8_t op) {
  auth_refusals_.fetch_add(1);
  MC_LOG(WARNING) << "fast rpc: refusing a connection without the right " << kAuthTokenEnv;
  const std::string reply = GateReply(AuthRefused("the master's fast RPC port"));
  Header rh;
  rh.op = op | 0x80;
  rh.length = static_cast<uint32_t>(reply.size());
  iovec iov[2] = {{&rh, sizeof(rh)}, {const_cast<char*>(reply.data()), reply.size()}};
  if (SendAll(fd, iov, 2).ok()) FinishRefusal(fd);
}

FastRpcClient::FastRpcClient(std::string host, int port, absl::Duration timeout,
                             std::string auth_token)
    : host_(std::move(host)), port_(port), timeout_(timeout), auth_token_(std::move(auth_token)) {}

FastRpcClient::~FastRpcClient() {
  absl::MutexLock lock(&mu_);
  for (int fd : idle_) close(fd);
}

absl::StatusOr<int> FastRpcClient::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      int fd = idle_.back();
      idle_.pop_back();
      return fd;
    }
  }
  absl::StatusOr<int> fd = ConnectTcp(host_, port_, timeout_);
  if (!fd.ok()) return fd.status();
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout_)),
             static_cast<suseconds_t>(absl::ToInt64Microseconds(timeout_) % 1000000)};
  setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (!auth_token_.empty()) {
    // No reply when it matches; a refusal answers the next request (see Call).
    Header h;
    h.op = static_cast<uint8_t>(FastRpcOp::kAuth);
    h.length = static_cast<uint32_t>(auth_token_.size());
    iovec iov[2] = {{&h, sizeof(h)}, {const_cast<char*>(auth_token_.data()), auth_token_.size()}};
    if (absl::Status s = SendAll(*fd, iov, 2); !s.ok()) {
      close(*fd);
      return s;
    }
  }
  return fd;
}

void FastRpcClient::Release(int fd, bool healthy) {
  if (!healthy) {
    close(fd);
    return;
  }
  absl::MutexLock lock(&mu_);
  idle_.push_back(fd);
}

absl::StatusOr<std::string> FastRpcClient::Call(FastRpcOp op, const std::string& payload) {
  absl::StatusOr<int> fd = Acquire();
  if (!fd.ok()) return absl::UnavailableError(fd.status().message());
  Header h;
  h.op = static_cast<uint8_t>(op);
  h.length = static_cast<uint32_t>(payload.size());
  iovec iov[2] = {{&h, sizeof(h)}, {const_cast<char*>(payload.data()), payload.size()}};
  absl::Status s = SendAll(*fd, iov, 2);
  if (!s.ok()) {
    Release(*fd, false);
    return absl::AbortedError(absl::StrCat("fast rpc send failed: ", s.message()));
  }
  Header rh;
  if (s.ok()) s = RecvAll(*fd, &rh, sizeof(rh));
  const uint8_t auth_reply = static_cast<uint8_t>(FastRpcOp::kAuth) | 0x80;
  const bool refused = rh.op == auth_reply;  // our token was refused; the server is closing
  if (s.ok() && (rh.magic != kMagic || (rh.op != (h.op | 0x80) && !refused) ||
                 rh.length > kMaxFastRpcPayload)) {
    s = absl::DataLossError("malformed fast rpc reply");
  }
  std::string reply;
  if (s.ok()) {
    reply.resize(rh.length);
    s = RecvAll(*fd, reply.data(), reply.size());
  }
  Release(*fd, s.ok() && !refused);
  // The request left: the master may have run it.
  if (!s.ok()) return absl::AbortedError(absl::StrCat("fast rpc reply lost: ", s.message()));
  Reader r(reply);
  int32_t code = r.I32();
  if (!r.ok()) return absl::AbortedError("short fast rpc reply");
  if (code != 0) {
    return MakeError(ErrorCodeFromInt(code).value_or(ErrorCode::INTERNAL_ERROR), r.Str());
  }
  return reply.substr(4);
}

absl::StatusOr<std::vector<ErrorCode>> FastRpcClient::Codes(FastRpcOp op,
                                                            absl::Span<const std::string> keys,
                                                            absl::Span<const uint64_t> put_ids,
                                                            bool quarantine) {
  Writer w;
  WriteKeys(keys, w);
  if (op == FastRpcOp::kPutEnd || op == FastRpcOp::kPutRevoke) {
    w.U32(static_cast<uint32_t>(put_ids.size()));
    for (uint64_t id : put_ids) w.U64(id);
  }
  if (op == FastRpcOp::kPutRevoke) w.U8(quarantine ? 1 : 0);
  absl::StatusOr<std::string> reply = Call(op, w.buf());
  if (!reply.ok()) return reply.status();
  Reader r(*reply);
  uint32_t n = r.Count(4);
  std::vector<ErrorCode> out;
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    out.push_back(ErrorCodeFromInt(r.I32()).value_or(ErrorCode::INTERNAL_ERROR));
  }
  if (!r.ok() || n != keys.size()) return absl::AbortedError("malformed fast rpc codes");
  return out;
}

absl::StatusOr<ReplicaListResult> FastRpcClient::GetReplicaList(
    absl::Span<const std::string> keys) {
  Writer w;
  WriteKeys(keys, w);
  absl::StatusOr<std::string> reply = Call(FastRpcOp::kGetReplicaList, w.buf());
  if (!reply.ok()) return reply.status();
  Reader r(*reply);
  ReplicaListResult out;
  out.lease_ttl = absl::Milliseconds(static_cast<int64_t>(r.U64()));
  if (!DecodeObjectReplicas(r, &out.objects) || out.objects.size() != keys.size()) {
    return absl::AbortedError("malformed fast rpc replica list");
  }
  return out;
}

absl::StatusOr<std::vector<ObjectReplicas>> FastRpcClient::PutStart(
    absl::Span<const std::string> keys, absl::Span<const uint64_t> sizes,
    const ReplicateConfig& config, absl::Span<const uint64_t> put_ids) {
  if (sizes.size() != keys.size()) {
    return MakeError(ErrorCode::INVALID_PARAMS, "keys and sizes differ in length");
  }
  Writer w;
  WriteKeys(keys, w);
  for (uint64_t s : sizes) w.U64(s);
  EncodeReplicateConfig(config, w);
  w.U32(static_cast<uint32_t>(put_ids.size()));
  for (uint64_t id : put_ids) w.U64(id);
  absl::StatusOr<std::string> reply = Call(FastRpcOp::kPutStart, w.buf());
  if (!reply.ok()) return reply.status();
  Reader r(*reply);
  std::vector<ObjectReplicas> out;
  if (!DecodeObjectReplicas(r, &out) || out.size() != keys.size()) {
    return absl::AbortedError("malformed fast rpc put start");
  }
  return out;
}

}  // namespace mooncake
