#include "mooncake/net/host_port.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mooncake {

std::string FormatHostPort(absl::string_view host, int port) {
  if (host.find(':') != absl::string_view::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

std::string HostPort::ToString() const { return FormatHostPort(host, port); }

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, int default_port) {
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("bad endpoint '", text, "': ", why));
  };
  absl::string_view rest = text;
  HostPort out;
  absl::string_view port_text;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == absl::string_view::npos) return error("unterminated '['");
    out.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return error("expected ':' after ']'");
      port_text = rest.substr(1);
      has_port = true;
    }
  } else {
    size_t colon = rest.rfind(':');
    if (colon != absl::string_view::npos && rest.find(':') != colon) {
      return error("IPv6 addresses must be written as [addr]:port");
    }
    if (colon == absl::string_view::npos) {
      out.host = std::string(rest);
    } else {
      out.host = std::string(rest.substr(0, colon));
      port_text = rest.substr(colon + 1);
      has_port = true;
    }
  }
  if (out.host.empty()) return error("empty host");
  for (char c : out.host) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '/' || c == '@') {
      return error("invalid character in host");
    }
  }
  if (!has_port) {
    if (default_port <= 0) return error("missing port (use host:port)");
    out.port = default_port;
    return out;
  }
  int port = 0;
  if (port_text.empty() || port_text.size() > 5 || !absl::SimpleAtoi(port_text, &port) ||
      port_text.front() == '+' || port_text.front() == '-' || port < 1 || port > 65535) {
    return error("port must be a number from 1 to 65535");
  }
  out.port = port;
  return out;
}

}  // namespace mooncake
