#include "mooncake/common/byte_size.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mooncake {
namespace {

absl::Status Malformed(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("invalid byte size \"", text, "\": ", why));
}

// Returns the shift for a unit suffix (0 for bytes), or -1 if the suffix is unknown.
int UnitShift(std::string unit) {
  unit = absl::AsciiStrToLower(unit);
  if (unit.empty() || unit == "b") return 0;
  static constexpr struct {
    char letter;
    int shift;
  } kUnits[] = {{'k', 10}, {'m', 20}, {'g', 30}, {'t', 40}, {'p', 50}};
  for (const auto& u : kUnits) {
    if (unit[0] != u.letter) continue;
    if (unit.size() == 1 || unit == std::string(1, u.letter) + "b" ||
        unit == std::string(1, u.letter) + "ib") {
      return u.shift;
    }
  }
  return -1;
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  if (s.empty()) return Malformed(text, "empty");
  if (s[0] == '-') return Malformed(text, "negative sizes are not allowed");
  if (s[0] == '+') s.remove_prefix(1);

  // Integer part, then an optional fraction, then an optional unit.
  size_t i = 0;
  unsigned __int128 whole = 0;
  bool any_digit = false;
  for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
    whole = whole * 10 + static_cast<unsigned>(s[i] - '0');
    any_digit = true;
    if (whole > UINT64_MAX) return Malformed(text, "too large");
  }
  unsigned __int128 frac = 0, frac_scale = 1;
  if (i < s.size() && s[i] == '.') {
    ++i;
    for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
      if (frac_scale > UINT64_MAX) return Malformed(text, "too many fraction digits");
      frac = frac * 10 + static_cast<unsigned>(s[i] - '0');
      frac_scale *= 10;
      any_digit = true;
    }
  }
  if (!any_digit) return Malformed(text, "expected a number such as 4294967296 or 4gb");
  std::string unit(absl::StripAsciiWhitespace(s.substr(i)));
  int shift = UnitShift(unit);
  if (shift < 0) {
    return Malformed(text, absl::StrCat("unknown unit \"", unit, "\" (use b, kb, mb, gb, tb, pb)"));
  }
  unsigned __int128 total = whole << shift;
  if (total > UINT64_MAX) return Malformed(text, "too large");
  unsigned __int128 frac_bytes = frac << shift;
  if (frac_bytes % frac_scale != 0) return Malformed(text, "not a whole number of bytes");
  total += frac_bytes / frac_scale;
  if (total > UINT64_MAX) return Malformed(text, "too large");
  return static_cast<uint64_t>(total);
}

std::string FormatByteSize(uint64_t bytes) {
  static constexpr const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024.0 && unit < 6) {
    value /= 1024.0;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.4g %s", value, kNames[unit]);
}

}  // namespace mooncake
