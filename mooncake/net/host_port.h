// HostPort: the one parser and formatter of "host:port" endpoints, for every address a user or a
// peer hands us (master address, metadata endpoints, segment names, listen addresses).
//
//   auto hp = ParseHostPort("127.0.0.1:2379");      // {"127.0.0.1", 2379}
//   auto v6 = ParseHostPort("[::1]:8080");          // {"::1", 8080}
//   auto d  = ParseHostPort("meta-host", 80);        // the port may be omitted: 80
//   std::string s = FormatHostPort("::1", 80);       // "[::1]:80"
#ifndef MOONCAKE_NET_HOST_PORT_H_
#define MOONCAKE_NET_HOST_PORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mooncake {

// HostPort is a parsed endpoint. `host` never has brackets; 1 <= port <= 65535.
struct HostPort {
  std::string host;
  int port = 0;

  // ToString formats it back, bracketing IPv6 literals.
  std::string ToString() const;
};

// ParseHostPort reads "host:port" or "[ipv6]:port". If `default_port` is positive the port may be
// omitted. Errors (empty host, a bare IPv6 address, bad or out-of-range port) are InvalidArgument
// and quote the text.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, int default_port = 0);

// FormatHostPort is HostPort{host, port}.ToString(): "h:p", or "[v6]:p" for an IPv6 literal.
std::string FormatHostPort(absl::string_view host, int port);

}  // namespace mooncake

#endif  // MOONCAKE_NET_HOST_PORT_H_
