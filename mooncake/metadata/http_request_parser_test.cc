#include "mooncake/metadata/http_request_parser.h"

#include <string>

#include "gtest/gtest.h"

namespace mooncake::metadata {
namespace {

using State = HttpRequestParser::State;
using std::string_literals::operator""s;

HttpParseLimits SmallLimits() {
  HttpParseLimits limits;
  limits.max_header_bytes = 256;
  limits.max_header_count = 4;
  limits.max_body_bytes = 100;
  return limits;
}

// ParseAll feeds `text` in pieces of `step` bytes and returns the parser's final state.
State ParseAll(HttpRequestParser& parser, const std::string& text, size_t step = 1 << 20) {
  size_t offset = 0;
  while (offset < text.size() &&
         (parser.state() == State::kHeaders || parser.state() == State::kBody)) {
    size_t used = parser.Feed(absl::string_view(text).substr(offset, step));
    if (used == 0) break;
    offset += used;
  }
  return parser.state();
}

TEST(HttpRequestParserTest, ParsesPutWithContentLengthInAnySplit) {
  const std::string text =
      "PUT /metadata?key=mooncake%2Fram%2Fa HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
      "Content-Type: application/json\r\n\r\nhello";
  for (size_t step : {1u, 2u, 7u, 1000u}) {
    HttpRequestParser parser(HttpParseLimits{});
    ASSERT_EQ(ParseAll(parser, text, step), State::kComplete) << "step " << step;
    HttpRequest request = parser.TakeRequest();
    EXPECT_EQ(request.method, "PUT");
    EXPECT_EQ(request.path, "/metadata");
    EXPECT_EQ(request.query, "key=mooncake%2Fram%2Fa");
    EXPECT_EQ(request.body, "hello");
    EXPECT_TRUE(request.keep_alive);
    ASSERT_NE(request.FindHeader("content-type"), nullptr);
    EXPECT_EQ(*request.FindHeader("content-type"), "application/json");
    EXPECT_EQ(parser.state(), State::kHeaders);  // reset for the next request
    EXPECT_FALSE(parser.started());
  }
}

TEST(HttpRequestParserTest, LeavesPipelinedRequestUnconsumed) {
  const std::string first = "GET /health HTTP/1.1\r\n\r\n";
  const std::string second = "GET /metadata?key=a HTTP/1.1\r\n\r\n";
  HttpRequestParser parser(HttpParseLimits{});
  size_t used = parser.Feed(first + second);
  EXPECT_EQ(used, first.size());
  ASSERT_EQ(parser.state(), State::kComplete);
  EXPECT_EQ(parser.TakeRequest().path, "/health");
  EXPECT_EQ(parser.Feed(second), second.size());
  ASSERT_EQ(parser.state(), State::kComplete);
  EXPECT_EQ(parser.TakeRequest().query, "key=a");
}

TEST(HttpRequestParserTest, DecodesChunkedBodyWithExtensionsAndTrailers) {
  const std::string text =
      "PUT /metadata?key=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n";
  for (size_t step : {1u, 3u, 1000u}) {
    HttpRequestParser parser(HttpParseLimits{});
    ASSERT_EQ(ParseAll(parser, text, step), State::kComplete) << parser.error_message();
    EXPECT_EQ(parser.TakeRequest().body, "hello world");
  }
}

TEST(HttpRequestParserTest, Http10ClosesUnlessKeepAlive) {
  HttpRequestParser parser(HttpParseLimits{});
  ASSERT_EQ(ParseAll(parser, "GET /health HTTP/1.0\r\n\r\n"), State::kComplete);
  EXPECT_FALSE(parser.TakeRequest().keep_alive);
  ASSERT_EQ(ParseAll(parser, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            State::kComplete);
  EXPECT_TRUE(parser.TakeRequest().keep_alive);
  ASSERT_EQ(ParseAll(parser, "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"),
            State::kComplete);
  EXPECT_FALSE(parser.TakeRequest().keep_alive);
}

TEST(HttpRequestParserTest, ReportsExpectContinueOnceHeadersAreIn) {
  HttpRequestParser parser(HttpParseLimits{});
  parser.Feed("PUT /metadata?key=a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  ASSERT_EQ(parser.state(), State::kBody);
  EXPECT_TRUE(parser.request().expect_continue);
  parser.Feed("abc");
  EXPECT_EQ(parser.state(), State::kComplete);
}

TEST(HttpRequestParserTest, AcceptsAbsoluteFormAndLeadingEmptyLines) {
  HttpRequestParser parser(HttpParseLimits{});
  ASSERT_EQ(ParseAll(parser, "\r\n\r\nGET http://h:8080/metadata?key=b HTTP/1.1\r\n\r\n"),
            State::kComplete);
  HttpRequest request = parser.TakeRequest();
  EXPECT_EQ(request.path, "/metadata");
  EXPECT_EQ(request.query, "key=b");
}

struct BadCase {
  const char* name;
  std::string text;
  int status;
};

TEST(HttpRequestParserTest, RejectsMalformedAndOversizedRequests) {
  const BadCase cases[] = {
      {"garbage", "\x16\x03\x01\x02\x00\x01\x00"s, 400},
      {"binary method", "G\x01T / HTTP/1.1\r\n\r\n", 400},
      {"two spaces", "GET  / HTTP/1.1\r\n\r\n", 400},
      {"no version", "GET /\r\n\r\n", 400},
      {"http2", "GET / HTTP/2.0\r\n\r\n", 505},
      {"bad version", "GET / HTTQ/1.1\r\n\r\n", 400},
      {"relative target", "GET metadata HTTP/1.1\r\n\r\n", 400},
      {"no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
      {"obs fold", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400},
      {"nul in value", "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n"s, 400},
      {"bad length", "PUT / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
      {"negative length", "PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"conflicting lengths", "PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
       400},
      {"length and chunked",
       "PUT / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"gzip coding", "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"chunked not last", "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
      {"bad chunk size", "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"chunk without crlf", "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX", 400},
      {"body too large", "PUT / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413},
      {"chunked too large",
       "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + std::string(64, 'a') +
           "\r\n40\r\n",
       413},
      {"huge chunk size",
       "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400},
      {"headers too large", "GET / HTTP/1.1\r\nA: " + std::string(300, 'a') + "\r\n\r\n", 431},
      {"too many headers", "GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n", 431},
      {"bad expectation", "PUT / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417},
  };
  for (const BadCase& c : cases) {
    HttpRequestParser parser(SmallLimits());
    EXPECT_EQ(ParseAll(parser, c.text), State::kError) << c.name;
    EXPECT_EQ(parser.error_status(), c.status) << c.name << ": " << parser.error_message();
    EXPECT_FALSE(parser.error_message().empty()) << c.name;
    EXPECT_EQ(parser.Feed("GET / HTTP/1.1\r\n\r\n"), 0u) << c.name;  // stays failed
  }
}

TEST(HttpRequestParserTest, GarbageFailsAtTheFirstByteWithoutWaitingForALine) {
  HttpRequestParser parser(HttpParseLimits{});
  EXPECT_EQ(parser.Feed(std::string("\x80", 1)), 1u);
  EXPECT_EQ(parser.state(), State::kError);
  EXPECT_EQ(parser.error_status(), 400);
}

TEST(HttpRequestParserTest, PercentDecoding) {
  EXPECT_EQ(*PercentDecode("mooncake%2Fram%2Fa+b%3a"), "mooncake/ram/a b:");
  EXPECT_TRUE(absl::IsInvalidArgument(PercentDecode("%zz").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(PercentDecode("abc%2").status()));
  const std::string key = "mooncake/rpc_meta/host:1234 &=+?#%\xe4\xb8\xad";
  EXPECT_EQ(*PercentDecode(PercentEncode(key)), key);
  EXPECT_EQ(PercentEncode("a-b_c.d~e/f"), "a-b_c.d~e%2Ff");
}

TEST(HttpRequestParserTest, FindQueryParam) {
  EXPECT_EQ(*FindQueryParam("a=1&key=x%2Fy&key=z", "key"), "x/y");
  EXPECT_EQ(*FindQueryParam("key=", "key"), "");
  EXPECT_EQ(*FindQueryParam("key", "key"), "");
  EXPECT_TRUE(absl::IsNotFound(FindQueryParam("a=1&keys=2", "key").status()));
  EXPECT_TRUE(absl::IsNotFound(FindQueryParam("", "key").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(FindQueryParam("key=%G0", "key").status()));
}

}  // namespace
}  // namespace mooncake::metadata
