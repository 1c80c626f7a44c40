#include "mooncake/metadata/http_request_parser.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mooncake::metadata {
namespace {

// Longest chunk-size line (size plus extensions) we accept.
constexpr size_t kMaxChunkLine = 1024;

bool IsTokenChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// Header values may hold visible characters, spaces, tabs and obs-text, but no other controls.
bool IsValidFieldValue(absl::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}

bool IsValidTarget(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

// ValidRequestLineByte says whether `c` may come next on a request line: the method (read while
// `in_method`) is a non-empty token, and the rest holds no control characters but the line end.
bool ValidRequestLineByte(bool in_method, bool line_empty, char c) {
  if (c == '\r' || c == '\n') return true;
  unsigned char u = static_cast<unsigned char>(c);
  if (u < 0x20 || u >= 0x7f) return false;
  if (c == ' ') return !line_empty;
  return !in_method || IsTokenChar(c);
}

absl::string_view TrimOws(absl::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

absl::string_view StripCr(absl::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsUnreserved(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
         c == '~';
}

}  // namespace

const std::string* HttpRequest::FindHeader(absl::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

HttpRequestParser::HttpRequestParser(HttpParseLimits limits) : limits_(limits) {}

void HttpRequestParser::Reset() {
  state_ = State::kHeaders;
  body_state_ = BodyState::kNone;
  request_ = HttpRequest();
  header_block_.clear();
  line_start_ = 0;
  in_method_ = true;
  line_.clear();
  trailer_bytes_ = 0;
  remaining_ = 0;
  bytes_consumed_ = 0;
  error_status_ = 0;
  error_message_.clear();
}

HttpRequest HttpRequestParser::TakeRequest() {
  HttpRequest out = std::move(request_);
  Reset();
  return out;
}

void HttpRequestParser::Fail(int status, std::string message) {
  state_ = State::kError;
  error_status_ = status;
  error_message_ = std::move(message);
}

size_t HttpRequestParser::Feed(absl::string_view data) {
  size_t used = 0;
  while (used < data.size() && (state_ == State::kHeaders || state_ == State::kBody)) {
    if (state_ == State::kHeaders) {
      char c = data[used++];
      ++bytes_consumed_;
      // Robustness (RFC 9112 2.2): empty lines before the request line are ignored.
      if (header_block_.empty() && (c == '\r' || c == '\n')) continue;
      if (header_block_.size() >= limits_.max_header_bytes) {
        Fail(431,
             absl::StrCat("request line and headers exceed ", limits_.max_header_bytes, " bytes"));
        break;
      }
      if (line_start_ == 0) {
        // Reject garbage at once instead of waiting for a line end that may never come.
        if (!ValidRequestLineByte(in_method_, header_block_.empty(), c)) {
          Fail(400, "malformed request line");
          break;
        }
        if (c == ' ') in_method_ = false;
      }
      header_block_.push_back(c);
      if (c != '\n') continue;
      absl::string_view line(header_block_.data() + line_start_,
                             header_block_.size() - line_start_ - 1);
      if (!StripCr(line).empty()) {
        line_start_ = header_block_.size();
        continue;
      }
      header_block_.resize(line_start_);  // drop the blank line
      ParseHead();
    } else {
      size_t n = FeedBody(data.substr(used));
      used += n;
      bytes_consumed_ += n;
    }
  }
  return used;
}

void HttpRequestParser::ParseHead() {
  std::vector<absl::string_view> lines = absl::StrSplit(header_block_, '\n');
  // The block ends with '\n', so the last piece is empty.
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return Fail(400, "empty request");

  // Request line: method SP request-target SP HTTP-version.
  absl::string_view request_line = StripCr(lines[0]);
  std::vector<absl::string_view> parts = absl::StrSplit(request_line, ' ');
  if (parts.size() != 3) return Fail(400, "malformed request line");
  if (!IsToken(parts[0])) return Fail(400, "malformed method");
  if (!IsValidTarget(parts[1])) return Fail(400, "malformed request target");
  absl::string_view version = parts[2];
  if (version == "HTTP/1.1") {
    request_.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    request_.minor_version = 0;
  } else if (absl::StartsWith(version, "HTTP/") && version.size() == 8 &&
             absl::ascii_isdigit(static_cast<unsigned char>(version[5])) && version[6] == '.' &&
             absl::ascii_isdigit(static_cast<unsigned char>(version[7]))) {
    return Fail(505, absl::StrCat("HTTP version ", version.substr(5), " not supported"));
  } else {
    return Fail(400, "malformed HTTP version");
  }
  request_.method = std::string(parts[0]);
  request_.target = std::string(parts[1]);

  absl::string_view target = parts[1];
  if (target.front() != '/') {
    // absolute-form ("http://host/path?q"), as sent to proxies; keep only path and query.
    size_t scheme_end = target.find("://");
    if (scheme_end == absl::string_view::npos || !IsToken(target.substr(0, scheme_end))) {
      return Fail(400, "request target must be a path");
    }
    size_t path_start = target.find_first_of("/?", scheme_end + 3);
    target =
        path_start == absl::string_view::npos ? absl::string_view("/") : target.substr(path_start);
  }
  target = target.substr(0, target.find('#'));
  size_t question = target.find('?');
  if (question == absl::string_view::npos) {
    request_.path = std::string(target);
  } else {
    request_.path = std::string(target.substr(0, question));
    request_.query = std::string(target.substr(question + 1));
  }
  if (request_.path.empty()) request_.path = "/";

  // Header fields.
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = StripCr(lines[i]);
    if (line.empty()) return Fail(400, "malformed header line");
    if (line.front() == ' ' || line.front() == '\t') {
      return Fail(400, "obsolete header line folding is not accepted");
    }
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) return Fail(400, "malformed header line");
    absl::string_view name = line.substr(0, colon);
    if (!IsToken(name)) return Fail(400, "malformed header name");
    absl::string_view value = TrimOws(line.substr(colon + 1));
    if (!IsValidFieldValue(value)) return Fail(400, "control character in header value");
    if (request_.headers.size() >= limits_.max_header_count) {
      return Fail(431, absl::StrCat("more than ", limits_.max_header_count, " header fields"));
    }
    request_.headers.emplace_back(absl::AsciiStrToLower(name), std::string(value));
  }

  // Framing (RFC 9112 6): Transfer-Encoding chunked, else Content-Length, else no body.
  bool has_length = false;
  uint64_t length = 0;
  bool chunked = false;
  std::string transfer_codings;
  request_.keep_alive = request_.minor_version >= 1;
  for (const auto& [name, value] : request_.headers) {
    if (name == "content-length") {
      uint64_t v = 0;
      bool digits = !value.empty() && value.size() <= 19 &&
                    std::all_of(value.begin(), value.end(), [](char c) {
                      return absl::ascii_isdigit(static_cast<unsigned char>(c));
                    });
      if (!digits || !absl::SimpleAtoi(value, &v)) return Fail(400, "malformed Content-Length");
      if (has_length && v != length) return Fail(400, "conflicting Content-Length headers");
      has_length = true;
      length = v;
    } else if (name == "transfer-encoding") {
      if (!transfer_codings.empty()) transfer_codings += ",";
      transfer_codings += absl::AsciiStrToLower(value);
    } else if (name == "connection") {
      for (absl::string_view token : absl::StrSplit(value, ',')) {
        token = TrimOws(token);
        if (absl::EqualsIgnoreCase(token, "close")) request_.keep_alive = false;
        if (absl::EqualsIgnoreCase(token, "keep-alive") && request_.minor_version == 0) {
          request_.keep_alive = true;
        }
      }
    } else if (name == "expect") {
      if (!absl::EqualsIgnoreCase(value, "100-continue")) {
        return Fail(417, absl::StrCat("unsupported expectation '", value, "'"));
      }
      request_.expect_continue = request_.minor_version >= 1;
    }
  }
  if (!transfer_codings.empty()) {
    if (request_.minor_version == 0) return Fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (has_length) return Fail(400, "both Transfer-Encoding and Content-Length");
    std::vector<absl::string_view> codings = absl::StrSplit(transfer_codings, ',');
    for (absl::string_view& coding : codings) coding = TrimOws(coding);
    if (codings.back() != "chunked") {
      return Fail(400, "the final transfer coding must be chunked");
    }
    if (codings.size() != 1) {
      return Fail(501, absl::StrCat("unsupported transfer coding '", transfer_codings, "'"));
    }
    chunked = true;
  }

  if (chunked) {
    state_ = State::kBody;
    body_state_ = BodyState::kChunkSize;
  } else if (has_length && length > 0) {
    if (length > limits_.max_body_bytes) {
      return Fail(413, absl::StrCat("body of ", length, " bytes exceeds the limit of ",
                                    limits_.max_body_bytes, " bytes"));
    }
    state_ = State::kBody;
    body_state_ = BodyState::kFixed;
    remaining_ = length;
  } else {
    state_ = State::kComplete;
  }
  header_block_.clear();
  header_block_.shrink_to_fit();
}

size_t HttpRequestParser::TakeLine(absl::string_view data, size_t max_line, bool* done) {
  *done = false;
  size_t newline = data.find('\n');
  size_t take = newline == absl::string_view::npos ? data.size() : newline + 1;
  if (line_.size() + take > max_line + 2) {
    Fail(400, "line too long in chunked body");
    return take;
  }
  line_.append(data.data(), take);
  *done = newline != absl::string_view::npos;
  return take;
}

void HttpRequestParser::OnChunkSizeLine() {
  absl::string_view line = StripCr(absl::string_view(line_).substr(0, line_.size() - 1));
  absl::string_view size_text = TrimOws(line.substr(0, line.find(';')));
  if (size_text.empty() || size_text.size() > 16) return Fail(400, "malformed chunk size");
  uint64_t size = 0;
  for (char c : size_text) {
    int v = HexValue(c);
    if (v < 0) return Fail(400, "malformed chunk size");
    size = size * 16 + static_cast<uint64_t>(v);
  }
  if (size > limits_.max_body_bytes - request_.body.size()) {
    return Fail(
        413, absl::StrCat("chunked body exceeds the limit of ", limits_.max_body_bytes, " bytes"));
  }
  line_.clear();
  if (size == 0) {
    body_state_ = BodyState::kTrailers;
  } else {
    remaining_ = size;
    body_state_ = BodyState::kChunkData;
  }
}

size_t HttpRequestParser::FeedBody(absl::string_view data) {
  switch (body_state_) {
    case BodyState::kFixed:
    case BodyState::kChunkData: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
      request_.body.append(data.data(), n);
      remaining_ -= n;
      if (remaining_ == 0) {
        if (body_state_ == BodyState::kFixed) {
          state_ = State::kComplete;
        } else {
          body_state_ = BodyState::kChunkDataEnd;
        }
      }
      return n;
    }
    case BodyState::kChunkSize: {
      bool done = false;
      size_t n = TakeLine(data, kMaxChunkLine, &done);
      if (done && state_ != State::kError) OnChunkSizeLine();
      return n;
    }
    case BodyState::kChunkDataEnd: {
      // Exactly "\r\n" (or a bare "\n") must follow the chunk data.
      char c = data[0];
      if (c == '\n' || (c == '\r' && line_.empty())) {
        if (c == '\r') {
          line_.push_back(c);
        } else {
          line_.clear();
          body_state_ = BodyState::kChunkSize;
        }
      } else {
        Fail(400, "chunk data not followed by CRLF");
      }
      return 1;
    }
    case BodyState::kTrailers: {
      bool done = false;
      size_t n = TakeLine(data, limits_.max_header_bytes, &done);
      trailer_bytes_ += n;
      if (state_ == State::kError) return n;
      if (trailer_bytes_ > limits_.max_header_bytes) {
        Fail(431, "trailer fields too large");
        return n;
      }
      if (done) {
        bool blank = line_ == "\r\n" || line_ == "\n";
        line_.clear();
        if (blank) state_ = State::kComplete;  // trailer fields are read and ignored
      }
      return n;
    }
    case BodyState::kNone:
      break;
  }
  Fail(500, "parser in an impossible state");
  return 0;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= text.size() || HexValue(text[i + 1]) < 0 || HexValue(text[i + 2]) < 0) {
        return absl::InvalidArgumentError("malformed percent-encoding");
      }
      int hi = HexValue(text[i + 1]);
      int lo = HexValue(text[i + 2]);
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::string> FindQueryParam(absl::string_view query, absl::string_view name) {
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    size_t eq = pair.find('=');
    absl::string_view raw_name = pair.substr(0, eq);
    absl::string_view raw_value =
        eq == absl::string_view::npos ? absl::string_view() : pair.substr(eq + 1);
    auto decoded_name = PercentDecode(raw_name);
    if (!decoded_name.ok() || *decoded_name != name) continue;
    auto value = PercentDecode(raw_value);
    if (!value.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("query parameter '", name, "': ", value.status().message()));
    }
    return value;
  }
  return absl::NotFoundError(absl::StrCat("no query parameter '", name, "'"));
}

std::string PercentEncode(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (IsUnreserved(c)) {
      out.push_back(c);
    } else {
      unsigned char u = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

}  // namespace mooncake::metadata
