// Fuzzes ParseByteSize (flags, env vars and config files: "4GB", "512 mib", "1.5g"). Checks:
// whatever parses, printed as a plain decimal, parses back to the same value; case and
// surrounding spaces do not change the result; FormatByteSize never fails on it.
#include <cctype>
#include <string>

#include "absl/strings/string_view.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<uint64_t> v = mooncake::ParseByteSize(input);
  std::string upper = " " + input + " ";
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  absl::StatusOr<uint64_t> u = mooncake::ParseByteSize(upper);
  MC_FUZZ_CHECK(v.ok() == u.ok());
  if (!v.ok()) return 0;
  MC_FUZZ_CHECK(*u == *v);
  absl::StatusOr<uint64_t> decimal = mooncake::ParseByteSize(std::to_string(*v));
  MC_FUZZ_CHECK(decimal.ok() && *decimal == *v);
  (void)mooncake::FormatByteSize(*v);
  return 0;
}

MC_FUZZ_SEEDS(seeds) {
  for (const char* s : {"4GB", "512 mib", "1.5g", "0", "18446744073709551615", "16EiB", "3kb",
                        "  7  ", "1e3", "0x10"}) {
    seeds->push_back(s);
  }
}
