// Fuzzes HttpRequestParser with hostile bytes. Beyond "no crash", it checks that
//   - the parse does not depend on how the bytes are split across reads (the first input byte
//     picks a split pattern): same states, same requests, same errors;
//   - every limit holds: a complete request never has more headers or body than allowed;
//   - an error always carries a 4xx/5xx status;
// and runs the query helpers on the parsed target.
#include <string>
#include <vector>

#include "mooncake/common/fuzz_target.h"
#include "mooncake/metadata/http_request_parser.h"

namespace {

using mooncake::metadata::HttpParseLimits;
using mooncake::metadata::HttpRequest;
using mooncake::metadata::HttpRequestParser;

// Small limits, so inputs of a few KiB reach every limit.
HttpParseLimits Limits() {
  HttpParseLimits limits;
  limits.max_header_bytes = 512;
  limits.max_header_count = 8;
  limits.max_body_bytes = 1024;
  return limits;
}

// Outcome is everything a server acts on, for comparing two parses.
struct Outcome {
  std::vector<HttpRequest> requests;
  int error_status = 0;
  bool incomplete = false;
};

bool SameRequest(const HttpRequest& a, const HttpRequest& b) {
  return a.method == b.method && a.target == b.target && a.path == b.path && a.query == b.query &&
         a.minor_version == b.minor_version && a.headers == b.headers && a.body == b.body &&
         a.keep_alive == b.keep_alive && a.expect_continue == b.expect_continue;
}

// Parse feeds `data` in pieces of at most `chunk` bytes (0: all at once), as a server would,
// taking pipelined requests one after another.
Outcome Parse(absl::string_view data, size_t chunk) {
  const HttpParseLimits limits = Limits();
  HttpRequestParser parser(limits);
  Outcome out;
  std::string pending;
  size_t offset = 0;
  while (true) {
    if (pending.empty()) {
      if (offset >= data.size()) break;
      size_t n = chunk == 0 ? data.size() - offset : std::min(chunk, data.size() - offset);
      pending.assign(data.data() + offset, n);
      offset += n;
    }
    size_t used = parser.Feed(pending);
    MC_FUZZ_CHECK(used <= pending.size());
    pending.erase(0, used);
    if (parser.state() == HttpRequestParser::State::kComplete) {
      HttpRequest request = parser.TakeRequest();
      MC_FUZZ_CHECK(request.headers.size() <= limits.max_header_count);
      MC_FUZZ_CHECK(request.body.size() <= limits.max_body_bytes);
      MC_FUZZ_CHECK(parser.state() == HttpRequestParser::State::kHeaders && !parser.started());
      (void)mooncake::metadata::FindQueryParam(request.query, "key");
      auto decoded = mooncake::metadata::PercentDecode(request.path);
      if (decoded.ok()) {
        // Encoding then decoding gives the text back.
        auto again = mooncake::metadata::PercentDecode(mooncake::metadata::PercentEncode(*decoded));
        MC_FUZZ_CHECK(again.ok() && *again == *decoded);
      }
      out.requests.push_back(std::move(request));
      continue;
    }
    if (parser.state() == HttpRequestParser::State::kError) {
      out.error_status = parser.error_status();
      MC_FUZZ_CHECK(out.error_status >= 400 && out.error_status < 600);
      return out;
    }
    // Not complete and no error: the parser must have wanted all of what it was given.
    MC_FUZZ_CHECK(pending.empty());
  }
  out.incomplete = parser.started();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const size_t kChunks[] = {1, 2, 3, 7, 16, 100};
  const size_t chunk = kChunks[data[0] % 6];
  absl::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  Outcome whole = Parse(input, 0);
  Outcome split = Parse(input, chunk);
  MC_FUZZ_CHECK(whole.error_status == split.error_status);
  MC_FUZZ_CHECK(whole.incomplete == split.incomplete);
  MC_FUZZ_CHECK(whole.requests.size() == split.requests.size());
  for (size_t i = 0; i < whole.requests.size(); ++i) {
    MC_FUZZ_CHECK(SameRequest(whole.requests[i], split.requests[i]));
  }
  return 0;
}

MC_FUZZ_SEEDS(seeds) {
  // The metadata server's real traffic (docs/compatibility.md section 6), with a split byte first.
  const char* requests[] = {
      "GET /metadata?key=mooncake%2Fram%2Fnode1 HTTP/1.1\r\nHost: x\r\n\r\n",
      "PUT /metadata?key=k HTTP/1.1\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\n"
      "{\"a\"}",
      "DELETE /metadata?key=k HTTP/1.1\r\nConnection: close\r\n\r\n",
      "PUT /metadata?key=k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\nX: "
      "y\r\n\r\n",
      // Two pipelined requests in one seed.
      "POST /api/x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
      "GET /health HTTP/1.1\r\n\r\n",
      "GET http://h:8080/metadata?key=a+b HTTP/1.1\r\n\r\n",
  };
  for (const char* request : requests) {
    for (char split : {'\0', '\3'}) seeds->push_back(std::string(1, split) + request);
  }
}
