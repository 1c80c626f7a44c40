// HttpRequestParser: an incremental, bounded HTTP/1.x request parser for the metadata server.
//
// Pure code (no sockets): the server feeds it whatever bytes arrive, in any split, and it reports a
// complete request, "need more bytes", or an error carrying the HTTP status to answer with. Every
// size is bounded (header block, header count, body), so a hostile peer cannot make it allocate
// more than the limits. Content-Length and chunked bodies are supported; pipelined requests are
// left unconsumed for the next round.
//
//   HttpRequestParser parser(HttpParseLimits{});
//   size_t used = parser.Feed(bytes);       // bytes[used..] belong to the next request
//   if (parser.state() == HttpRequestParser::State::kComplete) {
//     HttpRequest request = parser.TakeRequest();  // parser is reset for the next request
//   } else if (parser.state() == HttpRequestParser::State::kError) {
//     Reply(parser.error_status(), parser.error_message());  // then close the connection
//   }
#ifndef MOONCAKE_METADATA_HTTP_REQUEST_PARSER_H_
#define MOONCAKE_METADATA_HTTP_REQUEST_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mooncake::metadata {

// HttpRequest is one parsed request.
struct HttpRequest {
  std::string method;     // as sent ("GET"); methods are case-sensitive
  std::string target;     // request-target as sent
  std::string path;       // target up to '?' ("/metadata"); absolute-form targets are reduced to it
  std::string query;      // raw text after '?', not decoded
  int minor_version = 1;  // HTTP/1.<minor_version>
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, values trimmed
  std::string body;                                          // de-chunked
  bool keep_alive = true;        // the client allows another request on this connection
  bool expect_continue = false;  // "Expect: 100-continue" was sent

  // FindHeader returns the first value of header `lower_name`, or nullptr.
  const std::string* FindHeader(absl::string_view lower_name) const;
};

// HttpParseLimits bounds what one request may contain.
struct HttpParseLimits {
  size_t max_header_bytes = 64 << 10;  // request line + headers (and, separately, trailers)
  size_t max_header_count = 128;
  size_t max_body_bytes = 16 << 20;
};

// HttpRequestParser parses one request at a time. Not thread-safe.
class HttpRequestParser {
 public:
  enum class State {
    kHeaders,   // reading the request line and headers
    kBody,      // headers complete, reading the body
    kComplete,  // a whole request is ready: TakeRequest()
    kError,     // malformed or over a limit: answer error_status() and close
  };

  explicit HttpRequestParser(HttpParseLimits limits);

  // Feed consumes a prefix of `data` and returns its length. It stops after a complete request
  // (the rest is the next pipelined request) and consumes nothing in kComplete or kError.
  size_t Feed(absl::string_view data);

  State state() const { return state_; }

  // started says whether any byte of the current request has been consumed.
  bool started() const { return bytes_consumed_ > 0; }

  // request is the request being parsed; its head is valid from kBody on.
  const HttpRequest& request() const { return request_; }

  // TakeRequest returns the complete request and resets the parser. Requires kComplete.
  HttpRequest TakeRequest();

  // error_status is the HTTP status to answer in kError (400, 413, 431, 501, 505, ...).
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

  // Reset forgets the current request.
  void Reset();

 private:
  enum class BodyState { kNone, kFixed, kChunkSize, kChunkData, kChunkDataEnd, kTrailers };

  void Fail(int status, std::string message);
  // ParseHead parses header_block_ into request_ and picks the body framing.
  void ParseHead();
  // FeedBody consumes body bytes; returns how many.
  size_t FeedBody(absl::string_view data);
  // TakeLine appends bytes to line_ until '\n'; returns bytes used, sets *done when a line ended.
  size_t TakeLine(absl::string_view data, size_t max_line, bool* done);
  void OnChunkSizeLine();

  const HttpParseLimits limits_;  // constant after construction

  State state_ = State::kHeaders;
  BodyState body_state_ = BodyState::kNone;
  HttpRequest request_;
  std::string header_block_;  // raw request line and headers, without the final blank line
  size_t line_start_ = 0;     // offset in header_block_ of the line being read
  bool in_method_ = true;     // the request line's method is still being read
  std::string line_;          // chunk-size, chunk-end and trailer lines
  size_t trailer_bytes_ = 0;
  uint64_t remaining_ = 0;  // bytes left in the fixed body or current chunk
  uint64_t bytes_consumed_ = 0;
  int error_status_ = 0;
  std::string error_message_;
};

// PercentDecode decodes %XX escapes and '+' (as space, as in form-encoded query strings).
// Malformed escapes are an InvalidArgument error.
absl::StatusOr<std::string> PercentDecode(absl::string_view text);

// FindQueryParam returns the decoded value of the first `name` parameter in a raw query string,
// a NotFound error if there is none, or InvalidArgument if its value is malformed.
absl::StatusOr<std::string> FindQueryParam(absl::string_view query, absl::string_view name);

// PercentEncode escapes everything except RFC 3986 unreserved characters.
std::string PercentEncode(absl::string_view text);

}  // namespace mooncake::metadata

#endif  // MOONCAKE_METADATA_HTTP_REQUEST_PARSER_H_
