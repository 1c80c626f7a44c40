// The optional shared secret (MC_AUTH_TOKEN) that every server checks when a peer connects: the
// TCP data port, the master's fast RPC and gRPC ports, the shm handshake and the metadata
// server's writes (docs/compatibility.md section 7). Empty means off, which is Mooncake's
// behaviour: anyone who can reach a port may use it.
//
// Invariants: a server with a token answers a peer that did not present it with one error reply
// and closes the connection, having applied nothing; a server without a token accepts a token and
// ignores it, so clients may set it before their servers do. Comparison takes time independent of
// where the first differing byte is.
#ifndef MOONCAKE_COMMON_AUTH_TOKEN_H_
#define MOONCAKE_COMMON_AUTH_TOKEN_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mooncake {

inline constexpr char kAuthTokenEnv[] = "MC_AUTH_TOKEN";
// Tokens travel in frames and HTTP headers: 1..256 printable ASCII bytes, no spaces.
inline constexpr size_t kMaxAuthTokenBytes = 256;
// A server with a token gives a new connection this long to present it (one frame); until then
// it reads nothing of the peer beyond that frame's header and at most kMaxAuthTokenBytes.
inline constexpr absl::Duration kAuthFrameTimeout = absl::Seconds(5);
// The HTTP header (metadata server) and gRPC metadata key that carry the token.
inline constexpr char kAuthHeader[] = "x-mooncake-auth";

// ValidateAuthToken checks the form above; "" (off) is valid.
absl::Status ValidateAuthToken(absl::string_view token);
// AuthTokenFromEnv reads MC_AUTH_TOKEN ("" when unset); a malformed value is an error naming it.
absl::StatusOr<std::string> AuthTokenFromEnv();
// AuthTokenMatches: does `given` grant access to a server configured with `expected`? Always true
// when `expected` is empty.
bool AuthTokenMatches(absl::string_view expected, absl::string_view given);
// AuthRefused is the error a client sees (INVALID_PARAMS, naming the server and the variable).
absl::Status AuthRefused(absl::string_view server);

}  // namespace mooncake

#endif  // MOONCAKE_COMMON_AUTH_TOKEN_H_
