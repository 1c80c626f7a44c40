#include "mooncake/master/master_types.h"

#include "absl/strings/str_cat.h"

namespace mooncake {

std::string ClientId::ToString() const {
  return absl::StrCat(absl::Hex(high, absl::kZeroPad16), absl::Hex(low, absl::kZeroPad16));
}

}  // namespace mooncake
