// Fuzzes the TCP transport's data server: each input is a raw byte stream sent on a fresh
// loopback connection to a real TcpDataServer. Its registry holds one 4 KiB remote-accessible
// buffer at a fixed address (kBufferAddr, so inputs can name it), between guard pages of known
// bytes. An input whose first byte is 0 (never a frame's: the magic starts with 'M') goes,
// without that byte, to a second server with MC_AUTH_TOKEN kToken on the same registry.
// Checks, beyond "no crash":
//   - no request touches memory outside the registered buffer: the guards keep their bytes;
//   - the server answers or closes within the timeout (no hang), and keeps serving;
//   - every reply is a sequence of well-formed frames (valid header, echoed request ids);
//   - the token server, unless the input starts with an AUTH frame holding kToken, changes no
//     byte of the buffer and answers with error frames only (no data, no descriptor).
#include <sys/mman.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "mooncake/common/fuzz_target.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/loopback_exchange.h"
#include "mooncake/transfer/memory_registry.h"
#include "mooncake/transfer/tcp/tcp_data_server.h"

namespace {

using mooncake::FrameHeader;
using mooncake::FrameOp;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBase = 0x5a0000000000ull;  // guard page, buffer, guard page
constexpr uint64_t kBufferAddr = kBase + kPage;
constexpr uint8_t kGuardByte = 0xa5;
constexpr char kToken[] = "fuzz-token";

struct Server {
  mooncake::MemoryRegistry registry;
  std::unique_ptr<mooncake::TcpDataServer> server;
  std::unique_ptr<mooncake::TcpDataServer> token_server;  // with kToken
  uint8_t* base = nullptr;

  Server() {
    // Every malformed input logs a warning; millions of them would drown the fuzzer's output.
    mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
    void* p = mmap(reinterpret_cast<void*>(kBase), 3 * kPage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    MC_FUZZ_CHECK(p == reinterpret_cast<void*>(kBase));
    base = static_cast<uint8_t*>(p);
    memset(base, kGuardByte, 3 * kPage);
    mooncake::RegisteredBuffer buffer;
    buffer.addr = kBufferAddr;
    buffer.length = kPage;
    MC_FUZZ_CHECK(registry.Register(buffer).ok());
    mooncake::TcpDataServerOptions options;
    options.control_budget_bytes = 1 << 20;
    options.mid_frame_timeout_seconds = 2;
    server = Make(options);
    options.auth_token = kToken;
    token_server = Make(options);
  }

  std::unique_ptr<mooncake::TcpDataServer> Make(const mooncake::TcpDataServerOptions& options) {
    auto s = std::make_unique<mooncake::TcpDataServer>(
        &registry,
        [](FrameOp op, const std::string& payload) -> absl::StatusOr<std::string> {
          if (op == FrameOp::kGetDescriptor) return std::string("{\"name\":\"fuzz\"}");
          return absl::InvalidArgumentError("fuzz: unsupported " + std::to_string(payload.size()));
        },
        options);
    MC_FUZZ_CHECK(s->Start("127.0.0.1", 0).ok());
    return s;
  }

  bool GuardsIntact() const {
    for (uint64_t i = 0; i < kPage; ++i) {
      if (base[i] != kGuardByte || base[2 * kPage + i] != kGuardByte) return false;
    }
    return true;
  }
};

Server& TheServer() {
  static Server* server = new Server();  // lives for the whole run
  return *server;
}

// CheckReplies walks the reply stream: whole frames, each valid, payloads within bounds; with
// `errors_only`, every frame is an error.
void CheckReplies(absl::string_view reply, bool errors_only) {
  while (!reply.empty()) {
    MC_FUZZ_CHECK(reply.size() >= sizeof(FrameHeader));
    FrameHeader h;
    memcpy(&h, reply.data(), sizeof(h));
    MC_FUZZ_CHECK(h.magic == FrameHeader::kMagic && h.version == FrameHeader::kVersion);
    MC_FUZZ_CHECK((static_cast<uint8_t>(h.op) & 0x80) != 0);  // only replies come back
    MC_FUZZ_CHECK(!errors_only || h.status != 0);
    reply.remove_prefix(sizeof(h));
    // A reply carries its payload whole; the server never sends more than a frame allows.
    MC_FUZZ_CHECK(h.length <= reply.size());
    reply.remove_prefix(h.length);
  }
}

std::string Frame(FrameOp op, uint64_t id, uint64_t addr, uint64_t length,
                  absl::string_view payload = "") {
  FrameHeader h;
  h.op = op;
  h.request_id = id;
  h.addr = addr;
  h.length = length;
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h)) + std::string(payload);
}

}  // namespace

// Does `input` start with an AUTH frame that carries kToken?
bool PresentsToken(absl::string_view input) {
  if (input.size() < sizeof(FrameHeader)) return false;
  FrameHeader h;
  memcpy(&h, input.data(), sizeof(h));
  const absl::string_view token = input.substr(sizeof(h), h.length);
  return h.Validate().ok() && h.op == FrameOp::kAuth && token.size() == h.length && token == kToken;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Server& s = TheServer();
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  const bool to_token_server = !input.empty() && input[0] == '\0';
  if (to_token_server) input.remove_prefix(1);
  const bool refused = to_token_server && !PresentsToken(input);
  std::string before;
  if (refused) before.assign(reinterpret_cast<const char*>(kBufferAddr), kPage);
  absl::StatusOr<std::string> reply = mooncake::LoopbackExchange(
      (to_token_server ? s.token_server : s.server)->port(), input, absl::Seconds(10));
  MC_FUZZ_CHECK(reply.ok());  // answered and closed in time
  CheckReplies(*reply, refused);
  MC_FUZZ_CHECK(s.GuardsIntact());
  if (refused) {
    MC_FUZZ_CHECK(memcmp(before.data(), reinterpret_cast<const char*>(kBufferAddr), kPage) == 0);
  }
  return 0;
}

MC_FUZZ_SEEDS(seeds) {
  const std::string payload(64, 'x');
  std::string token(8, '\0');
  token[0] = 7;
  seeds->push_back(Frame(FrameOp::kWrite, 1, kBufferAddr, payload.size(), payload));
  seeds->push_back(Frame(FrameOp::kRead, 2, kBufferAddr + 100, 200));
  seeds->push_back(Frame(FrameOp::kWrite, 3, kBufferAddr + kPage - 8, 16, std::string(16, 'y')));
  seeds->push_back(Frame(FrameOp::kRead, 4, kBufferAddr - 8, 16));
  seeds->push_back(Frame(FrameOp::kGetDescriptor, 5, 0, 0));
  seeds->push_back(Frame(FrameOp::kHello, 6, 0, 8, token) +
                   Frame(FrameOp::kWrite, 7, kBufferAddr, 4, "abcd") +
                   Frame(FrameOp::kFence, 8, 0, 8, token));
  seeds->push_back(Frame(FrameOp::kRdmaHandshake, 9, 0, 2, "{}") +
                   Frame(FrameOp::kService, 10, 0, 3, "abc"));
  seeds->push_back(Frame(FrameOp::kRead, 11, kBufferAddr, kPage) +
                   Frame(FrameOp::kWrite, 12, kBufferAddr, 1, "z") +
                   Frame(FrameOp::kRead, 13, kBufferAddr, 1));
  // For the token server (first byte 0): with the token, without it, with a wrong one.
  const std::string to_token(1, '\0');
  const std::string auth = Frame(FrameOp::kAuth, 14, 0, strlen(kToken), kToken);
  seeds->push_back(to_token + auth + Frame(FrameOp::kWrite, 15, kBufferAddr, 4, "abcd") +
                   Frame(FrameOp::kRead, 16, kBufferAddr, 4));
  seeds->push_back(to_token + Frame(FrameOp::kWrite, 17, kBufferAddr, 4, "abcd"));
  seeds->push_back(to_token + Frame(FrameOp::kAuth, 18, 0, 5, "wrong") +
                   Frame(FrameOp::kRead, 19, kBufferAddr, 4));
  seeds->push_back(to_token + Frame(FrameOp::kGetDescriptor, 20, 0, 0));
}
