#include "mooncake/common/auth_token.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"

namespace mooncake {

absl::Status ValidateAuthToken(absl::string_view token) {
  if (token.size() > kMaxAuthTokenBytes) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat(kAuthTokenEnv, ": longer than ", kMaxAuthTokenBytes, " bytes"));
  }
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat(kAuthTokenEnv, ": only printable ASCII without spaces"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> AuthTokenFromEnv() {
  const char* v = std::getenv(kAuthTokenEnv);
  if (v == nullptr) return std::string();
  if (absl::Status s = ValidateAuthToken(v); !s.ok()) return s;
  return std::string(v);
}

bool AuthTokenMatches(absl::string_view expected, absl::string_view given) {
  if (expected.empty()) return true;
  // Every byte of `expected` is looked at whatever `given` holds; only the length leaks.
  unsigned char diff = expected.size() == given.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(expected[i]) ^ g;
  }
  return diff == 0;
}

absl::Status AuthRefused(absl::string_view server) {
  return MakeError(ErrorCode::INVALID_PARAMS,
                   absl::StrCat(server, " refused the connection: ", kAuthTokenEnv,
                                " is missing or does not match the server's"));
}

}  // namespace mooncake
