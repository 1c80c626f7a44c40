#include "mooncake/metadata/http_metadata_server.h"

#include <httplib.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mooncake/metadata/http_request_parser.h"
#include "mooncake/metadata/raw_http_connection.h"

namespace mooncake::metadata {
namespace {

// Fixture: a server on 127.0.0.1 with an ephemeral port and small limits.
class HttpMetadataServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpMetadataServerOptions options) {
    options.host = "127.0.0.1";
    options.port = 0;
    server_ = std::make_unique<HttpMetadataServer>(options);
    absl::Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_GT(server_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_connection_timeout(2);
    client_->set_read_timeout(5);
  }

  void SetUp() override {
    HttpMetadataServerOptions options;
    options.max_body_bytes = 1024;
    options.max_keys = 100;
    StartServer(options);
  }

  static std::string Target(const std::string& key) {
    return absl::StrCat("/metadata?key=", PercentEncode(key));
  }

  int port() const { return server_->port(); }

  // ExpectHealthy checks that the server still answers a normal request.
  void ExpectHealthy() {
    auto response = RawHttpExchange(port(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 200);
  }

  std::unique_ptr<HttpMetadataServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpMetadataServerTest, HealthIs200) {
  auto result = client_->Get("/health");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
}

TEST_F(HttpMetadataServerTest, PutGetDeleteRoundTrip) {
  const std::string key = "mooncake/ram/node0";
  const std::string value = R"({"name":"node0","protocol":"tcp","buffers":[]})";
  EXPECT_EQ(client_->Get(Target(key))->status, 404);

  auto put = client_->Put(Target(key), value, "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200);

  auto get = client_->Get(Target(key));
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, value);
  EXPECT_EQ(get->get_header_value("Content-Type"), "application/json");

  // Ordinary keys are overwritten.
  ASSERT_EQ(client_->Put(Target(key), "{}", "application/json")->status, 200);
  EXPECT_EQ(client_->Get(Target(key))->body, "{}");

  EXPECT_EQ(client_->Delete(Target(key))->status, 200);
  EXPECT_EQ(client_->Get(Target(key))->status, 404);
  EXPECT_EQ(client_->Delete(Target(key))->status, 404);
}

TEST_F(HttpMetadataServerTest, KeysWithReservedCharactersRoundTrip) {
  for (const std::string key :
       {"mooncake/rpc_meta/10.0.0.1:12345", "a b&c=d+e%f?g#h", "\xe4\xb8\xad\xe6\x96\x87/key"}) {
    ASSERT_EQ(client_->Put(Target(key), key, "text/plain")->status, 200) << key;
    auto get = client_->Get(Target(key));
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 200) << key;
    EXPECT_EQ(get->body, key);
  }
  // An unencoded '/' in the query is the same key (as curl users write it).
  auto raw = RawHttpExchange(port(),
                             "GET /metadata?key=mooncake/rpc_meta/10.0.0.1:12345 "
                             "HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->status, 200);
}

TEST_F(HttpMetadataServerTest, MissingOrEmptyKeyIs400) {
  for (const char* target : {"/metadata", "/metadata?", "/metadata?other=1", "/metadata?key="}) {
    EXPECT_EQ(client_->Get(target)->status, 400) << target;
    EXPECT_EQ(client_->Put(target, "{}", "application/json")->status, 400) << target;
    EXPECT_EQ(client_->Delete(target)->status, 400) << target;
  }
  auto response = client_->Get("/metadata");
  EXPECT_NE(response->body.find("key"), std::string::npos) << response->body;
  EXPECT_EQ(client_->Get("/metadata?key=%zz")->status, 400);
}

TEST_F(HttpMetadataServerTest, RpcMetaConflictIs400AndSameBodyIs200) {
  const std::string key = "mooncake/rpc_meta/node0";
  const std::string mine = R"({"ip_or_host_name":"10.0.0.1","rpc_port":12345})";
  const std::string theirs = R"({"ip_or_host_name":"10.0.0.2","rpc_port":12345})";
  ASSERT_EQ(client_->Put(Target(key), mine, "application/json")->status, 200);
  EXPECT_EQ(client_->Put(Target(key), mine, "application/json")->status, 200);
  auto conflict = client_->Put(Target(key), theirs, "application/json");
  EXPECT_EQ(conflict->status, 400);
  EXPECT_NE(conflict->body.find("already claimed"), std::string::npos) << conflict->body;
  EXPECT_EQ(client_->Get(Target(key))->body, mine);  // the first claim stands

  // Once the owner removes its entry, the name is free.
  ASSERT_EQ(client_->Delete(Target(key))->status, 200);
  EXPECT_EQ(client_->Put(Target(key), theirs, "application/json")->status, 200);

  // Other keys are overwritten freely.
  const std::string ram = "mooncake/ram/node0";
  EXPECT_EQ(client_->Put(Target(ram), mine, "application/json")->status, 200);
  EXPECT_EQ(client_->Put(Target(ram), theirs, "application/json")->status, 200);
}

TEST_F(HttpMetadataServerTest, UnknownPathIs404AndWrongMethodIs405) {
  EXPECT_EQ(client_->Get("/")->status, 404);
  EXPECT_EQ(client_->Get("/metadata/x?key=a")->status, 404);
  auto post = client_->Post(Target("a"), "{}", "application/json");
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET, PUT, DELETE");
}

TEST_F(HttpMetadataServerTest, BodyOverLimitIs413AndServerStillAnswers) {
  // Announced too large: rejected before the body is read.
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  conn.Send("PUT /metadata?key=big HTTP/1.1\r\nContent-Length: 1025\r\n\r\n");
  conn.Send(std::string(1025, 'x'));
  auto response = conn.ReadResponse();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 413);
  EXPECT_NE(response->head.find("connection: close"), std::string::npos);
  EXPECT_TRUE(conn.WaitForClose(absl::Seconds(5)));

  // The same through httplib, and chunked bodies that grow past the limit.
  EXPECT_EQ(client_->Put(Target("big"), std::string(2000, 'x'), "text/plain")->status, 413);
  auto chunked = RawHttpExchange(port(),
                                 "PUT /metadata?key=big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                                 "\r\n400\r\n" +
                                     std::string(1024, 'x') + "\r\n1\r\nx\r\n0\r\n\r\n");
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  EXPECT_EQ(chunked->status, 413);
  EXPECT_EQ(client_->Get(Target("big"))->status, 404);

  // Exactly at the limit is fine.
  EXPECT_EQ(client_->Put(Target("big"), std::string(1024, 'x'), "text/plain")->status, 200);
  ExpectHealthy();
}

TEST_F(HttpMetadataServerTest, TooManyKeysIs507WithClearMessage) {
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(client_->Put(Target(absl::StrCat("k", i)), "v", "text/plain")->status, 200);
  }
  auto full = client_->Put(Target("one-more"), "v", "text/plain");
  EXPECT_EQ(full->status, 507);
  EXPECT_NE(full->body.find("full"), std::string::npos) << full->body;
  EXPECT_EQ(client_->Put(Target("k0"), "v2", "text/plain")->status, 200);  // overwrite is fine
  ASSERT_EQ(client_->Delete(Target("k1"))->status, 200);
  EXPECT_EQ(client_->Put(Target("one-more"), "v", "text/plain")->status, 200);
}

TEST_F(HttpMetadataServerTest, GarbageBytesGet400AndCloseThenServerStillAnswers) {
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage.push_back(static_cast<char>((i * 131 + 7) % 256));
  conn.Send(garbage);
  auto response = conn.ReadResponse();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 400);
  EXPECT_TRUE(conn.WaitForClose(absl::Seconds(5)));

  // A TLS ClientHello (someone used https://) is garbage too.
  auto tls =
      RawHttpExchange(port(), std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11));
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->status, 400);
  ExpectHealthy();
}

TEST_F(HttpMetadataServerTest, HugeHeadersGet431) {
  std::string request = "GET /health HTTP/1.1\r\n";
  for (int i = 0; i < 2000; ++i)
    request += absl::StrCat("X-Filler-", i, ": ", std::string(60, 'a'), "\r\n");
  request += "\r\n";
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  conn.Send(request);  // the server may stop reading early; that is fine
  auto response = conn.ReadResponse();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 431);
  ExpectHealthy();
}

TEST_F(HttpMetadataServerTest, TruncatedBodyIsRejectedAndNotStored) {
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  conn.Send("PUT /metadata?key=half HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789");
  conn.ShutdownWrite();
  auto response = conn.ReadResponse();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 400);
  EXPECT_NE(response->body.find("truncated"), std::string::npos) << response->body;
  EXPECT_EQ(client_->Get(Target("half"))->status, 404);
}

TEST_F(HttpMetadataServerTest, PipelinedRequestsAreAnsweredInOrder) {
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  conn.Send(
      "PUT /metadata?key=p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
      "GET /metadata?key=p HTTP/1.1\r\n\r\n"
      "DELETE /metadata?key=p HTTP/1.1\r\n\r\n"
      "GET /metadata?key=p HTTP/1.1\r\nConnection: close\r\n\r\n");
  std::vector<int> statuses;
  for (int i = 0; i < 4; ++i) {
    auto response = conn.ReadResponse();
    ASSERT_TRUE(response.ok()) << response.status();
    statuses.push_back(response->status);
    if (i == 1) {
      EXPECT_EQ(response->body, "abc");
    }
  }
  EXPECT_EQ(statuses, (std::vector<int>{200, 200, 200, 404}));
  EXPECT_TRUE(conn.WaitForClose(absl::Seconds(5)));  // Connection: close is honoured
}

TEST_F(HttpMetadataServerTest, HalfClosedClientGetsEveryAnswer) {
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  conn.Send(
      "PUT /metadata?key=h HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"
      "GET /metadata?key=h HTTP/1.1\r\n\r\n");
  conn.ShutdownWrite();
  auto put = conn.ReadResponse();
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->status, 200);
  auto get = conn.ReadResponse();
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->body, "x");
  EXPECT_TRUE(conn.WaitForClose(absl::Seconds(5)));
}

TEST_F(HttpMetadataServerTest, ChunkedBodyAndExpectContinue) {
  auto chunked = RawHttpExchange(port(),
                                 "PUT /metadata?key=c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                                 "\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n");
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  EXPECT_EQ(chunked->status, 200);
  EXPECT_EQ(client_->Get(Target("c"))->body, "{\"a\":1}");

  // curl sends "Expect: 100-continue" for large bodies and waits for the interim response.
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  conn.Send("PUT /metadata?key=e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  auto interim = conn.ReadResponse();
  ASSERT_TRUE(interim.ok()) << interim.status();
  EXPECT_EQ(interim->status, 100);
  conn.Send("{}");
  auto final_response = conn.ReadResponse();
  ASSERT_TRUE(final_response.ok()) << final_response.status();
  EXPECT_EQ(final_response->status, 200);
}

TEST_F(HttpMetadataServerTest, Http10GetsAnAnswerAndAClose) {
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  conn.Send("GET /health HTTP/1.0\r\n\r\n");
  auto response = conn.ReadResponse();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(conn.WaitForClose(absl::Seconds(5)));
}

TEST_F(HttpMetadataServerTest, ConcurrentPutAndGetFromManyThreads) {
  HttpMetadataServerOptions options;
  options.max_keys = 10000;
  StartServer(options);
  constexpr int kThreads = 8;
  constexpr int kOps = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      httplib::Client client("127.0.0.1", port());
      client.set_read_timeout(5);
      for (int i = 0; i < kOps; ++i) {
        const std::string key = absl::StrCat("mooncake/ram/t", t, "_", i % 10);
        const std::string value = absl::StrCat("{\"writer\":", t, ",\"op\":", i, "}");
        auto put = client.Put(Target(key), value, "application/json");
        auto get = client.Get(Target(key));
        auto shared = client.Get(Target("mooncake/ram/shared"));
        if (!put || put->status != 200 || !get || get->status != 200 || get->body != value ||
            !shared || (shared->status != 200 && shared->status != 404)) {
          ++failures;
        }
        if (t == 0) client.Put(Target("mooncake/ram/shared"), value, "application/json");
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(HttpMetadataServerTest, SecondServerOnTheSamePortFailsClearly) {
  HttpMetadataServerOptions options;
  options.host = "127.0.0.1";
  options.port = port();
  HttpMetadataServer second(options);
  absl::Status s = second.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(absl::StrCat("127.0.0.1:", port())), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("in use"), absl::string_view::npos) << s;
  ExpectHealthy();  // the first one is unaffected
}

TEST_F(HttpMetadataServerTest, BindsOnlyTheConfiguredAddress) {
  // All of 127/8 is loopback on Linux: a server bound to 127.0.0.1 must not answer on 127.0.0.2.
  RawHttpConnection other;
  absl::Status s = other.Connect(port(), "127.0.0.2");
  EXPECT_FALSE(s.ok()) << "server reachable on an address it was not configured with";
  ExpectHealthy();
}

TEST_F(HttpMetadataServerTest, StartTwiceFailsAndStopIsIdempotent) {
  EXPECT_TRUE(absl::IsFailedPrecondition(server_->Start()));
  RawHttpConnection idle;
  ASSERT_TRUE(idle.Connect(port()).ok());
  server_->Stop();
  EXPECT_TRUE(idle.WaitForClose(absl::Seconds(2)));  // open connections are closed
  server_->Stop();
  RawHttpConnection late;
  EXPECT_FALSE(late.Connect(port()).ok());
}

TEST(HttpMetadataServerStandaloneTest, RejectsBadOptions) {
  HttpMetadataServerOptions options;
  options.port = 70000;
  EXPECT_TRUE(absl::IsInvalidArgument(HttpMetadataServer(options).Start()));
  options.port = 0;
  options.host = "no-such-host.invalid";
  absl::Status s = HttpMetadataServer(options).Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no-such-host.invalid"), absl::string_view::npos) << s;
  HttpMetadataServer never_started(HttpMetadataServerOptions{});
  never_started.Stop();  // no-op
}

// Slow and idle peers: short timeouts so the test is quick.
class HttpMetadataServerTimeoutTest : public HttpMetadataServerTest {
 protected:
  void SetUp() override {
    HttpMetadataServerOptions options;
    options.request_timeout = absl::Milliseconds(600);
    options.idle_timeout = absl::Milliseconds(1200);
    options.max_connections = 8;
    StartServer(options);
  }
};

TEST_F(HttpMetadataServerTimeoutTest, SlowlorisConnectionsTimeOutWithoutBlockingOthers) {
  // Six peers trickle a request that never ends, one byte per peer every 100 ms.
  std::vector<std::unique_ptr<RawHttpConnection>> slow;
  for (int i = 0; i < 6; ++i) {
    slow.push_back(std::make_unique<RawHttpConnection>());
    ASSERT_TRUE(slow.back()->Connect(port()).ok());
    slow.back()->Send("GET /health HTTP/1.1\r\nX-Slow: ");
  }
  const absl::Time start = absl::Now();
  bool all_answered = false;
  while (!all_answered && absl::Now() - start < absl::Seconds(3)) {
    all_answered = true;
    for (auto& conn : slow) {
      if (conn->HasInput()) continue;
      all_answered = false;
      conn->Send("a");  // activity does not extend the request deadline
    }
    ExpectHealthy();  // others are served meanwhile
    absl::SleepFor(absl::Milliseconds(100));
  }
  // The deadline runs from the first byte of the request (600 ms), not from the last one.
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1300));
  for (auto& conn : slow) {
    auto response = conn->ReadResponse();
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 408);
    EXPECT_TRUE(conn->WaitForClose(absl::Seconds(2)));
  }
}

TEST_F(HttpMetadataServerTimeoutTest, IdleKeepAliveConnectionIsClosed) {
  RawHttpConnection conn;
  ASSERT_TRUE(conn.Connect(port()).ok());
  conn.Send("GET /health HTTP/1.1\r\n\r\n");
  ASSERT_EQ(conn.ReadResponse()->status, 200);
  const absl::Time start = absl::Now();
  EXPECT_TRUE(conn.WaitForClose(absl::Seconds(5)));
  const absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(1000));
  EXPECT_LT(waited, absl::Seconds(3));
}

TEST_F(HttpMetadataServerTimeoutTest, ConnectionLimitDropsIdleFirstThenRefuses) {
  // Fill the table with idle connections: a new client is still served, and one idle
  // connection is dropped to make room.
  std::vector<std::unique_ptr<RawHttpConnection>> conns;
  for (int i = 0; i < 8; ++i) {
    conns.push_back(std::make_unique<RawHttpConnection>());
    ASSERT_TRUE(conns.back()->Connect(port()).ok());
  }
  absl::SleepFor(absl::Milliseconds(300));  // let the server accept them all
  ExpectHealthy();
  absl::SleepFor(absl::Milliseconds(100));
  int dropped = 0;
  for (auto& conn : conns) dropped += conn->HasInput() ? 1 : 0;  // EOF from the server
  EXPECT_EQ(dropped, 1);

  // When every slot is mid-request, a new connection is refused with 503.
  conns.clear();
  absl::SleepFor(absl::Milliseconds(300));
  for (int i = 0; i < 8; ++i) {
    conns.push_back(std::make_unique<RawHttpConnection>());
    ASSERT_TRUE(conns.back()->Connect(port()).ok());
    conns.back()->Send("GET /health HTTP/1.1\r\n");
  }
  absl::SleepFor(absl::Milliseconds(300));
  auto refused = RawHttpExchange(port(), "GET /health HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->status, 503);
  EXPECT_NE(refused->body.find("too many connections"), std::string::npos);
}

}  // namespace
}  // namespace mooncake::metadata
