// Fuzzes the master's fast RPC port and, behind it, the master's request validation: each input
// is a raw byte stream on a fresh loopback connection to a real FastRpcServer over a real
// MasterService with two mounted segments (state carries over between inputs, as on a live
// master). Checks, beyond "no crash":
//   - the server answers or closes in time (no hang), and keeps serving;
//   - replies are whole frames, each a reply op with the frame version and a batch code;
//   - the master's invariants hold after every input (MasterService::CheckInvariants: every
//     allocator's allocated + free == mounted size, every object's replicas inside its segment).
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/fuzz_target.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/fast_rpc.h"
#include "mooncake/master/master_service.h"
#include "mooncake/master/master_wire.h"
#include "mooncake/net/loopback_exchange.h"
#include "mooncake/net/wire.h"

namespace {

using mooncake::FastRpcOp;

constexpr uint32_t kMagic = 0x5246434d;  // "MCFR" (fast_rpc.h)

struct Master {
  mooncake::ManualClock clock{absl::ToInt64Nanoseconds(absl::Hours(1))};
  std::unique_ptr<mooncake::MasterService> service;
  std::unique_ptr<mooncake::FastRpcServer> server;

  Master() {
    // Every malformed input logs a warning; millions of them would drown the fuzzer's output.
    mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
    mooncake::MasterServiceOptions options;
    options.client_ttl = absl::Hours(10);
    service = std::make_unique<mooncake::MasterService>(options, &clock);
    // Metadata only: the master never touches segment memory.
    MC_FUZZ_CHECK(service->MountSegment({1, 1}, {"segA", 0x7f0000000000, 1 << 20}).ok());
    MC_FUZZ_CHECK(service->MountSegment({2, 2}, {"segB", 0x7e0000000000, 1 << 20}).ok());
    mooncake::FastRpcServerOptions server_options;
    server_options.request_budget_bytes = 8 << 20;
    server = std::make_unique<mooncake::FastRpcServer>(service.get(), server_options);
    MC_FUZZ_CHECK(server->Start("127.0.0.1", 0).ok());
  }
};

Master& TheMaster() {
  static Master* master = new Master();  // lives for the whole run
  return *master;
}

void CheckReplies(absl::string_view reply) {
  while (!reply.empty()) {
    MC_FUZZ_CHECK(reply.size() >= 12);
    uint32_t magic, length;
    memcpy(&magic, reply.data(), 4);
    const uint8_t op = static_cast<uint8_t>(reply[4]);
    const uint8_t version = static_cast<uint8_t>(reply[5]);
    memcpy(&length, reply.data() + 8, 4);
    MC_FUZZ_CHECK(magic == kMagic && version == mooncake::kFastRpcVersion);
    MC_FUZZ_CHECK(op >= 0x81 && op <= 0x85);
    reply.remove_prefix(12);
    MC_FUZZ_CHECK(length >= 4 && length <= reply.size());  // a batch code, then the results
    reply.remove_prefix(length);
  }
}

std::string Frame(FastRpcOp op, const std::string& payload) {
  mooncake::WireWriter w;
  w.U32(kMagic);
  w.U8(static_cast<uint8_t>(op));
  w.U8(mooncake::kFastRpcVersion);
  w.U8(0);
  w.U8(0);
  w.U32(static_cast<uint32_t>(payload.size()));
  return w.buf() + payload;
}

void Keys(mooncake::WireWriter& w, std::initializer_list<const char*> keys) {
  w.U32(static_cast<uint32_t>(keys.size()));
  for (const char* key : keys) w.Str(key);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Master& m = TheMaster();
  absl::StatusOr<std::string> reply = mooncake::LoopbackExchange(
      m.server->port(), absl::string_view(reinterpret_cast<const char*>(data), size),
      absl::Seconds(10));
  MC_FUZZ_CHECK(reply.ok());
  CheckReplies(*reply);
  absl::Status invariants = m.service->CheckInvariants();
  if (!invariants.ok()) fprintf(stderr, "%s\n", std::string(invariants.message()).c_str());
  MC_FUZZ_CHECK(invariants.ok());
  // Now and then let leases and put timeouts expire, so removal and eviction paths run too.
  if (size > 0 && data[0] == 0xee) {
    m.clock.Advance(absl::Seconds(30));
    m.service->Tick();
  }
  return 0;
}

MC_FUZZ_SEEDS(seeds) {
  mooncake::ReplicateConfig two;
  two.replica_num = 2;
  two.preferred_segments = {"segB"};
  {  // put-start of two keys, then put-end, exist and get-replica-list, on one connection
    mooncake::WireWriter start, end, exist, get;
    Keys(start, {"k1", "k2"});
    start.U64(4096);
    start.U64(100);
    mooncake::EncodeReplicateConfig(two, start);
    start.U32(2);
    start.U64(11);
    start.U64(12);
    Keys(end, {"k1", "k2"});
    end.U32(2);
    end.U64(11);
    end.U64(12);
    Keys(exist, {"k1", "k2", "missing"});
    Keys(get, {"k1", "missing"});
    seeds->push_back(Frame(FastRpcOp::kPutStart, start.buf()) +
                     Frame(FastRpcOp::kPutEnd, end.buf()) + Frame(FastRpcOp::kExist, exist.buf()) +
                     Frame(FastRpcOp::kGetReplicaList, get.buf()));
  }
  {  // put-start then revoke with quarantine
    mooncake::WireWriter start, revoke;
    Keys(start, {"r"});
    start.U64(1 << 19);
    mooncake::EncodeReplicateConfig(mooncake::ReplicateConfig(), start);
    Keys(revoke, {"r"});
    revoke.U32(0);
    revoke.U8(1);
    seeds->push_back(Frame(FastRpcOp::kPutStart, start.buf()) +
                     Frame(FastRpcOp::kPutRevoke, revoke.buf()));
  }
  {  // keys the master must refuse: empty, and a size of 0
    mooncake::WireWriter start;
    Keys(start, {"", "z"});
    start.U64(8);
    start.U64(0);
    mooncake::EncodeReplicateConfig(mooncake::ReplicateConfig(), start);
    seeds->push_back(Frame(FastRpcOp::kPutStart, start.buf()));
  }
}
