// Byte sizes as users write them: "4294967296", "4gb", "4GB", "512mb", "1.5GiB", "64 KiB".
//
// Units are binary whatever their spelling (k/kb/kib = 1024, m/mb/mib = 1024^2, g, t, p), matching
// how SGLang and Mooncake read MOONCAKE_GLOBAL_SEGMENT_SIZE. Fractions are allowed when the result
// is a whole number of bytes. Negative, overflowing or malformed inputs are errors that quote the
// input.
#ifndef MOONCAKE_COMMON_BYTE_SIZE_H_
#define MOONCAKE_COMMON_BYTE_SIZE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mooncake {

// ParseByteSize parses `text` into a number of bytes (see the file comment for the grammar).
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// FormatByteSize renders `bytes` for people: "4 GiB", "1.5 MiB", "512 B".
std::string FormatByteSize(uint64_t bytes);

}  // namespace mooncake

#endif  // MOONCAKE_COMMON_BYTE_SIZE_H_
