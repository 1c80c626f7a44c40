// Tests of NewMetadataClient and the HTTP backend against a real HttpMetadataServer on loopback.
#include "mooncake/metadata/http_metadata_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/test_util.h"
#include "mooncake/metadata/http_metadata_server.h"
#include "mooncake/metadata/metadata_client.h"

namespace mooncake::metadata {
namespace {

std::unique_ptr<HttpMetadataServer> StartServer(int port = 0, size_t max_body_bytes = 1 << 20) {
  HttpMetadataServerOptions options;
  options.host = "127.0.0.1";
  options.port = port;
  options.max_body_bytes = max_body_bytes;
  auto server = std::make_unique<HttpMetadataServer>(options);
  absl::Status s = server->Start();
  EXPECT_TRUE(s.ok()) << s;
  return server;
}

std::string UrlOf(int port) { return absl::StrCat("http://127.0.0.1:", port, "/metadata"); }

TEST(NewMetadataClientTest, ChoosesBackendOrExplains) {
  auto http = NewMetadataClient("http://127.0.0.1:8080/metadata");
  ASSERT_TRUE(http.ok()) << http.status();
  EXPECT_NE(dynamic_cast<HttpMetadataClient*>(http->get()), nullptr);

  auto p2p = NewMetadataClient("P2PHANDSHAKE");
  EXPECT_TRUE(absl::IsInvalidArgument(p2p.status()));
  EXPECT_NE(p2p.status().message().find("transfer engine"), absl::string_view::npos)
      << p2p.status();

  for (const char* bad : {"", "   ", "redis://127.0.0.1:6379", "https://h:1/metadata", "etcd://",
                          "localhost", "etcd://h:99999", "http://:80/metadata"}) {
    auto client = NewMetadataClient(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(client.status())) << "'" << bad << "'";
  }
  // etcd forms are accepted without contacting etcd.
  for (const char* etcd : {"etcd://127.0.0.1:2379", "127.0.0.1:2379",
                           "etcd://10.0.0.1:2379,10.0.0.2:2379", "[::1]:2379"}) {
    EXPECT_TRUE(NewMetadataClient(etcd).ok()) << etcd;
  }
}

TEST(HttpMetadataClientTest, RoundTripThroughTheServer) {
  auto server = StartServer();
  auto client = NewMetadataClient(UrlOf(server->port()));
  ASSERT_TRUE(client.ok()) << client.status();
  MetadataClient& c = **client;

  const std::string key = "mooncake/ram/10.0.0.1:12345";
  const std::string value = R"({"name":"10.0.0.1:12345","protocol":"tcp","buffers":[]})";
  auto missing = c.Get(key);
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  ASSERT_TRUE(c.Put(key, value).ok());
  auto got = c.Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, value);
  ASSERT_TRUE(c.Remove(key).ok());
  absl::Status again = c.Remove(key);
  EXPECT_TRUE(absl::IsNotFound(again)) << again;
  EXPECT_TRUE(absl::IsNotFound(c.Get(key).status()));

  // Binary values and awkward keys survive the trip.
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  ASSERT_TRUE(c.Put("a b&c=d+e%f?", binary).ok());
  EXPECT_EQ(*c.Get("a b&c=d+e%f?"), binary);
  EXPECT_TRUE(absl::IsInvalidArgument(c.Put("", "x")));
}

TEST(HttpMetadataClientTest, ConflictingRpcMetaClaimIsAlreadyExists) {
  auto server = StartServer();
  auto first = NewMetadataClient(UrlOf(server->port()));
  auto second = NewMetadataClient(UrlOf(server->port()));
  ASSERT_TRUE(first.ok() && second.ok());
  const std::string key = "mooncake/rpc_meta/node0";
  ASSERT_TRUE((*first)->Put(key, R"({"ip_or_host_name":"a","rpc_port":1})").ok());
  absl::Status s = (*second)->Put(key, R"({"ip_or_host_name":"b","rpc_port":2})");
  EXPECT_TRUE(absl::IsAlreadyExists(s)) << s;
  EXPECT_EQ(ToErrorCode(s), ErrorCode::SEGMENT_ALREADY_EXISTS);
  EXPECT_NE(s.message().find(key), absl::string_view::npos) << s;
  EXPECT_TRUE((*first)->Put(key, R"({"ip_or_host_name":"a","rpc_port":1})").ok());
}

TEST(HttpMetadataClientTest, OversizedValueIsAClearError) {
  auto server = StartServer(0, /*max_body_bytes=*/100);
  auto client = NewMetadataClient(UrlOf(server->port()));
  ASSERT_TRUE(client.ok());
  absl::Status s = (*client)->Put("k", std::string(101, 'x'));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("413"), absl::string_view::npos) << s;
  EXPECT_TRUE((*client)->Put("k", std::string(100, 'x')).ok());  // the connection still works
}

TEST(HttpMetadataClientTest, DownServerFailsPromptlyNamingTheAddress) {
  const int port = UnusedLoopbackPort();
  auto client = NewMetadataClient(UrlOf(port));
  ASSERT_TRUE(client.ok());
  const absl::Time start = absl::Now();
  auto got = (*client)->Get("k");
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(ToErrorCode(got.status()), ErrorCode::RPC_FAIL) << got.status();
  EXPECT_NE(got.status().message().find(UrlOf(port)), absl::string_view::npos) << got.status();
  EXPECT_FALSE((*client)->Put("k", "v").ok());
  EXPECT_FALSE((*client)->Remove("k").ok());
}

TEST(HttpMetadataClientTest, HungServerTimesOut) {
  // A listener that never accepts: connect succeeds (backlog), no reply ever comes.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  HttpMetadataClientOptions options;
  options.io_timeout = absl::Milliseconds(300);
  auto client = HttpMetadataClient::Create(UrlOf(ntohs(addr.sin_port)), options);
  ASSERT_TRUE(client.ok());
  const absl::Time start = absl::Now();
  auto got = (*client)->Get("k");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(ToErrorCode(got.status()), ErrorCode::RPC_TIMEOUT) << got.status();
  close(fd);
}

TEST(HttpMetadataClientTest, SurvivesServerRestartBetweenCalls) {
  auto server = StartServer();
  const int port = server->port();
  auto client = NewMetadataClient(UrlOf(port));
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Put("k", "v1").ok());  // leaves a keep-alive connection open
  server.reset();
  server = StartServer(port);  // same port, empty store
  EXPECT_TRUE(absl::IsNotFound((*client)->Get("k").status()));
  EXPECT_TRUE((*client)->Put("k", "v2").ok());
  EXPECT_EQ(*(*client)->Get("k"), "v2");
}

TEST(HttpMetadataClientTest, SharedClientFromManyThreads) {
  auto server = StartServer();
  auto client = NewMetadataClient(UrlOf(server->port()));
  ASSERT_TRUE(client.ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string key = absl::StrCat("mooncake/ram/t", t);
        std::string value = absl::StrCat(i);
        if (!(*client)->Put(key, value).ok()) ++failures;
        auto got = (*client)->Get(key);
        if (!got.ok() || *got != value) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace mooncake::metadata
