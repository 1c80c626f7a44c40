#include "mooncake/net/host_port.h"

#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(HostPortTest, ParsesHostAndPort) {
  auto hp = ParseHostPort("127.0.0.1:2379");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 2379);
  EXPECT_EQ(hp->ToString(), "127.0.0.1:2379");

  auto name = ParseHostPort("etcd-0.cluster:12379");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(name->host, "etcd-0.cluster");
}

TEST(HostPortTest, ParsesBracketedIpv6) {
  auto hp = ParseHostPort("[::1]:8080");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 8080);
  EXPECT_EQ(hp->ToString(), "[::1]:8080");
}

TEST(HostPortTest, DefaultPortOnlyWhenAllowed) {
  auto hp = ParseHostPort("meta", 80);
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->port, 80);
  auto missing = ParseHostPort("meta");
  EXPECT_TRUE(absl::IsInvalidArgument(missing.status()));
  EXPECT_NE(missing.status().message().find("missing port"), absl::string_view::npos);
}

TEST(HostPortTest, RejectsMalformed) {
  for (const char* bad : {"", ":80", "h:", "h:0", "h:65536", "h:-1", "h:+5", "h:8x", "::1:80",
                          "[::1", "[::1]80", "a b:1", "user@h:1", "h/x:1"}) {
    auto hp = ParseHostPort(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(hp.status())) << "'" << bad << "'";
  }
}

TEST(HostPortTest, FormatsIpv6WithBrackets) {
  EXPECT_EQ(FormatHostPort("::1", 80), "[::1]:80");
  EXPECT_EQ(FormatHostPort("127.0.0.1", 80), "127.0.0.1:80");
  EXPECT_EQ(ParseHostPort(FormatHostPort("fe80::2", 9))->host, "fe80::2");
}

}  // namespace
}  // namespace mooncake
