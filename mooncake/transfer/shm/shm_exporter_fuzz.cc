// Fuzzes the shared-memory handshake: a real ShmExporter on an abstract unix socket, serving one
// registered memfd buffer. Each input becomes a stream of handshake messages, built from 9-byte
// records (a selector byte and a 64-bit value): "give me the fd of buffer A" requests naming the
// real buffer, an address near it, the generation page or any value, and AUTH messages (the magic,
// a token length and a token) with the right token or a wrong one, plus up to 7 tail bytes.
// An input whose first byte is 0 goes, without that byte, to a second exporter with
// MC_AUTH_TOKEN kToken. The expected replies come from a model of the protocol that parses the
// bytes actually sent (shared_memory.cc, "Handshake"). Checks:
//   - the exporter answers exactly the model's replies, in order, then closes;
//   - it grants an fd only for the generation page (addr 0, 4096 bytes) or the buffer's exact
//     start address (the buffer's length), and refuses everything else;
//   - the token exporter grants nothing before an AUTH message with kToken, refuses the first
//     other message, and closes on it;
//   - no hang: the exporter answers and finishes each connection within seconds.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/fuzz_target.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/loopback_exchange.h"
#include "mooncake/transfer/memory_registry.h"
#include "mooncake/transfer/shm/shared_memory.h"

namespace {

constexpr uint64_t kBufferBytes = 64 << 10;
constexpr uint64_t kAuthMagic = 0x48545541484d434dull;  // "MCMHAUTH", as shared_memory.cc
constexpr int32_t kAuthRefused = -2;
constexpr char kToken[] = "fuzz-token";

struct Exporter {
  mooncake::MemoryRegistry registry;
  mooncake::SharedBuffer buffer;
  std::unique_ptr<mooncake::ShmExporter> open;
  std::unique_ptr<mooncake::ShmExporter> with_token;  // MC_AUTH_TOKEN kToken

  Exporter() {
    // Every malformed input logs a warning; millions of them would drown the fuzzer's output.
    mooncake::SetMinLogLevel(mooncake::LogLevel::ERROR);
    auto b = mooncake::AllocateSharedBuffer(kBufferBytes, "fuzz");
    MC_FUZZ_CHECK(b.ok());
    buffer = *b;
    mooncake::RegisteredBuffer rb;
    rb.addr = reinterpret_cast<uint64_t>(buffer.addr);
    rb.length = buffer.length;
    rb.shm_fd = buffer.fd;
    MC_FUZZ_CHECK(registry.Register(rb).ok());
    const std::string name = "mooncake-shm-fuzz-" + std::to_string(getpid());
    open = std::make_unique<mooncake::ShmExporter>(&registry);
    MC_FUZZ_CHECK(open->Start(name).ok());
    with_token = std::make_unique<mooncake::ShmExporter>(&registry, kToken);
    MC_FUZZ_CHECK(with_token->Start(name + "-token").ok());
  }
  uint64_t addr() const { return reinterpret_cast<uint64_t>(buffer.addr); }
};

Exporter& TheExporter() {
  static Exporter* exporter = new Exporter();
  return *exporter;
}

struct Reply {
  int32_t status;
  uint32_t reserved;
  uint64_t length;
};

enum class Expect { kGrant, kRefuse, kAuthOk, kAuthRefused };
struct Expected {
  Expect what;
  uint64_t length;  // for kGrant
};

void AppendU64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }

// The protocol, read off the bytes sent: what the exporter must answer before it closes.
std::vector<Expected> Model(absl::string_view s, const std::string& token, uint64_t buffer) {
  std::vector<Expected> out;
  bool authenticated = token.empty();
  size_t pos = 0;
  auto read_u64 = [&](uint64_t* v) {
    if (s.size() - pos < 8) return false;
    memcpy(v, s.data() + pos, 8);
    pos += 8;
    return true;
  };
  uint64_t v;
  while (read_u64(&v)) {
    if (v == kAuthMagic) {
      uint64_t length;
      if (!read_u64(&length) || length == 0 || length > mooncake::kMaxAuthTokenBytes) break;
      if (s.size() - pos < length) break;
      const absl::string_view given = s.substr(pos, length);
      pos += length;
      if (!token.empty() && given != token) {
        out.push_back({Expect::kAuthRefused, 0});
        break;
      }
      authenticated = true;
      out.push_back({Expect::kAuthOk, 0});
      continue;
    }
    if (!authenticated) {
      out.push_back({Expect::kAuthRefused, 0});
      break;
    }
    if (v == 0) {
      out.push_back({Expect::kGrant, 4096});
    } else if (v == buffer) {
      out.push_back({Expect::kGrant, kBufferBytes});
    } else {
      out.push_back({Expect::kRefuse, 0});
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Exporter& e = TheExporter();
  const bool token_server = size > 0 && data[0] == 0;
  if (token_server) {
    ++data;
    --size;
  }
  std::string stream;
  size_t i = 0;
  for (; i + 9 <= size; i += 9) {
    uint64_t v;
    memcpy(&v, data + i + 1, 8);
    switch (data[i] % 5) {
      case 0:  // any value (the magic too, followed by whatever comes next)
        AppendU64(&stream, v);
        break;
      case 1:  // at or near the buffer
        AppendU64(&stream, e.addr() + (v % (2 * kBufferBytes)) - kBufferBytes);
        break;
      case 2:  // the generation page
        AppendU64(&stream, 0);
        break;
      case 3:  // AUTH with the right token
        AppendU64(&stream, kAuthMagic);
        AppendU64(&stream, sizeof(kToken) - 1);
        stream.append(kToken);
        break;
      case 4: {  // AUTH with a wrong token, of any length (0 and > 256 are malformed)
        const uint64_t length = v % 300;
        AppendU64(&stream, kAuthMagic);
        AppendU64(&stream, length);
        stream.append(length, static_cast<char>('a' + v % 26));
        break;
      }
    }
  }
  // A partial message (at most 7 bytes: the exporter never answers it).
  stream.append(reinterpret_cast<const char*>(data + i), std::min<size_t>(size - i, 7));

  mooncake::ShmExporter& exporter = token_server ? *e.with_token : *e.open;
  const std::vector<Expected> expected = Model(stream, token_server ? kToken : "", e.addr());
  absl::StatusOr<std::string> reply = mooncake::UnixExchange(exporter.name(), stream);
  MC_FUZZ_CHECK(reply.ok());
  // The exporter's thread may still be finishing (a refusal drains until the peer closes): wait
  // for it, so what it holds is not counted against the next input (libFuzzer's leak check).
  for (int spins = 0; exporter.serving() > 0; ++spins) {
    MC_FUZZ_CHECK(spins < 5000);  // 5 s
    usleep(1000);
  }
  MC_FUZZ_CHECK(reply->size() == expected.size() * sizeof(Reply));
  for (size_t n = 0; n < expected.size(); ++n) {
    Reply r;
    memcpy(&r, reply->data() + n * sizeof(Reply), sizeof(r));
    switch (expected[n].what) {
      case Expect::kGrant:
        MC_FUZZ_CHECK(r.status == 0 && r.length == expected[n].length);
        break;
      case Expect::kRefuse:
        MC_FUZZ_CHECK(r.status == static_cast<int32_t>(mooncake::ErrorCode::INVALID_PARAMS));
        break;
      case Expect::kAuthOk:
        MC_FUZZ_CHECK(r.status == 0 && r.length == 0);
        break;
      case Expect::kAuthRefused:
        MC_FUZZ_CHECK(r.status == kAuthRefused);
        break;
    }
  }
  return 0;
}

MC_FUZZ_SEEDS(seeds) {
  auto record = [](uint8_t selector, uint64_t v) {
    std::string s(1, static_cast<char>(selector));
    s.append(reinterpret_cast<const char*>(&v), 8);
    return s;
  };
  seeds->push_back(record(2, 0) + record(1, 64 << 10) + record(1, (64 << 10) + 8));
  seeds->push_back(record(0, 0xdeadbeef) + record(1, 0) + "abc");
  seeds->push_back(record(3, 0) + record(2, 0) + record(4, 10) + record(2, 0));
  // The token exporter: refused without AUTH; served after it.
  seeds->push_back(std::string(1, '\0') + record(2, 0) + record(1, 64 << 10));
  seeds->push_back(std::string(1, '\0') + record(3, 0) + record(1, 64 << 10) + record(2, 0));
  seeds->push_back(std::string(1, '\0') + record(4, 299) + record(2, 0));
}
