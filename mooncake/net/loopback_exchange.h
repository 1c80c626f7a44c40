// LoopbackExchange: for fuzz targets and tests that speak a server's protocol with raw bytes.
// Connects to 127.0.0.1:port (or an abstract unix socket "@name"), sends `request`, half-closes,
// and returns what the server sent back until it closed the connection. The server must close on
// end of stream (every server here does); a reply longer than `max_reply` or slower than
// `timeout` is an error, which a fuzz target treats as a hang.
#ifndef MOONCAKE_NET_LOOPBACK_EXCHANGE_H_
#define MOONCAKE_NET_LOOPBACK_EXCHANGE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mooncake {

absl::StatusOr<std::string> LoopbackExchange(int port, absl::string_view request,
                                             absl::Duration timeout = absl::Seconds(10),
                                             size_t max_reply = 64 << 20);
absl::StatusOr<std::string> UnixExchange(const std::string& abstract_name,
                                         absl::string_view request,
                                         absl::Duration timeout = absl::Seconds(10),
                                         size_t max_reply = 64 << 20);

}  // namespace mooncake

#endif  // MOONCAKE_NET_LOOPBACK_EXCHANGE_H_
