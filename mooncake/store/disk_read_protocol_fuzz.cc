// Fuzzes the SSD tier's read request (a SERVICE frame's payload from a peer). The encoding is
// lossless and rejects trailing bytes, so: a request that decodes re-encodes to the same bytes,
// and every decoded bound holds (item count, key length, total reply size).
#include <string>

#include "absl/strings/string_view.h"
#include "mooncake/common/fuzz_target.h"
#include "mooncake/store/disk_read_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  auto items = mooncake::DecodeDiskReadRequest(input);
  if (!items.ok()) return 0;
  MC_FUZZ_CHECK(mooncake::EncodeDiskReadRequest(*items) == input);
  MC_FUZZ_CHECK(items->size() <= mooncake::kMaxDiskReadItems);
  uint64_t total = 0;
  for (const auto& item : *items) {
    MC_FUZZ_CHECK(!item.key.empty() && item.key.size() <= 4096);
    total += item.length;
  }
  MC_FUZZ_CHECK(total <= mooncake::kMaxDiskReadReply);
  return 0;
}

MC_FUZZ_SEEDS(seeds) {
  seeds->push_back(mooncake::EncodeDiskReadRequest({{"k1", 0, 4096}, {"key/2", 100, 7}}));
  seeds->push_back(mooncake::EncodeDiskReadRequest({{"x", 0, 1}}));
}
