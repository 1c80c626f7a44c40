// HostPort: parsing of "host:port" endpoints in metadata connection strings.
//
//   auto hp = ParseHostPort("127.0.0.1:2379");      // {"127.0.0.1", 2379}
//   auto v6 = ParseHostPort("[::1]:8080");          // {"::1", 8080}
//   auto d  = ParseHostPort("meta-host", 80);        // port defaults to 80
//   std::string s = hp->ToString();                  // "127.0.0.1:2379"
#ifndef MOONCAKE_METADATA_HOST_PORT_H_
#define MOONCAKE_METADATA_HOST_PORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mooncake::metadata {

// HostPort is a parsed endpoint. `host` never has brackets; 1 <= port <= 65535.
struct HostPort {
  std::string host;
  int port = 0;

  // ToString formats it back, bracketing IPv6 literals.
  std::string ToString() const;
};

// ParseHostPort reads "host:port" or "[ipv6]:port". If `default_port` is positive the port may be
// omitted. Errors (empty host, bad or out-of-range port) are InvalidArgument naming the text.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, int default_port = 0);

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_HOST_PORT_H_
