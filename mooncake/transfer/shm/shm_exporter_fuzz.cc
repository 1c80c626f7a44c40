// Fuzzes the shared-memory handshake: a real ShmExporter on an abstract unix socket, serving one
// registered memfd buffer. Each input becomes a stream of 8-byte "give me the fd of buffer A"
// requests (records of a selector byte and a 64-bit value, so inputs can name the real buffer,
// an address near it, the generation page, or anything), plus any tail bytes. Checks:
//   - the exporter answers every whole request with exactly one 16-byte reply, then closes;
//   - it grants an fd only for the generation page (addr 0, 4096 bytes) or the buffer's exact
//     start address (the buffer's length), and refuses everything else;
//   - no hang.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "mooncake/common/fuzz_target.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/loopback_exchange.h"
#include "mooncake/transfer/memory_registry.h"
#include "mooncake/transfer/shm/shared_memory.h"

namespace {

constexpr uint64_t kBufferBytes = 64 << 10;

struct Exporter {
  mooncake::MemoryRegistry registry;
  mooncake::SharedBuffer buffer;
  std::unique_ptr<mooncake::ShmExporter> exporter;

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
    exporter = std::make_unique<mooncake::ShmExporter>(&registry);
    MC_FUZZ_CHECK(exporter->Start("mooncake-shm-fuzz-" + std::to_string(getpid())).ok());
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Exporter& e = TheExporter();
  std::vector<uint64_t> addrs;
  std::string stream;
  size_t i = 0;
  for (; i + 9 <= size; i += 9) {
    uint64_t v;
    memcpy(&v, data + i + 1, 8);
    switch (data[i] % 3) {
      case 0:
        break;  // any address
      case 1:
        v = e.addr() + (v % (2 * kBufferBytes)) - kBufferBytes;  // at or near the buffer
        break;
      case 2:
        v = 0;  // the generation page
        break;
    }
    addrs.push_back(v);
    stream.append(reinterpret_cast<const char*>(&v), 8);
  }
  // A partial request (at most 7 bytes: the exporter never answers it).
  stream.append(reinterpret_cast<const char*>(data + i), std::min<size_t>(size - i, 7));
  absl::StatusOr<std::string> reply = mooncake::UnixExchange(e.exporter->name(), stream);
  MC_FUZZ_CHECK(reply.ok());
  MC_FUZZ_CHECK(reply->size() == addrs.size() * sizeof(Reply));
  for (size_t n = 0; n < addrs.size(); ++n) {
    Reply r;
    memcpy(&r, reply->data() + n * sizeof(Reply), sizeof(r));
    const bool grantable = addrs[n] == 0 || addrs[n] == e.addr();
    MC_FUZZ_CHECK((r.status == 0) == grantable);
    if (r.status == 0) MC_FUZZ_CHECK(r.length == (addrs[n] == 0 ? 4096 : kBufferBytes));
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
}
