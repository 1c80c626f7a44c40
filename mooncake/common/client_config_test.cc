#include "mooncake/common/client_config.h"

#include <cstdio>
#include <fstream>
#include <map>

#include "gtest/gtest.h"

namespace mooncake {
namespace {

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ClientConfigTest, DefaultsMatchSGLang) {
  absl::StatusOr<ClientConfig> c = LoadClientConfigFromEnv(FakeEnv({{"MOONCAKE_MASTER", "h:1"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->local_hostname, "localhost");
  EXPECT_EQ(c->metadata_server, "P2PHANDSHAKE");
  EXPECT_EQ(c->global_segment_size, 4ull << 30);
  EXPECT_EQ(c->local_buffer_size, 16ull << 20);
  EXPECT_EQ(c->protocol, "tcp");
  EXPECT_EQ(c->device_name, "");
}

TEST(ClientConfigTest, ReadsEveryVariable) {
  absl::StatusOr<ClientConfig> c = LoadClientConfigFromEnv(FakeEnv({
      {"MOONCAKE_LOCAL_HOSTNAME", "10.0.0.5"},
      {"MOONCAKE_TE_META_DATA_SERVER", "http://127.0.0.1:8080/metadata"},
      {"MOONCAKE_GLOBAL_SEGMENT_SIZE", "4gb"},
      {"MOONCAKE_LOCAL_BUFFER_SIZE", "134217728"},
      {"MOONCAKE_PROTOCOL", "RDMA"},
      {"MOONCAKE_DEVICE", "erdma_0,erdma_1"},
      {"MOONCAKE_MASTER", "127.0.0.1:50051"},
  }));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->local_hostname, "10.0.0.5");
  EXPECT_EQ(c->metadata_server, "http://127.0.0.1:8080/metadata");
  EXPECT_EQ(c->global_segment_size, 4ull << 30);
  EXPECT_EQ(c->local_buffer_size, 128ull << 20);
  EXPECT_EQ(c->protocol, "rdma");
  EXPECT_EQ(c->device_name, "erdma_0,erdma_1");
  EXPECT_EQ(c->master_server_address, "127.0.0.1:50051");
}

TEST(ClientConfigTest, ErrorsNameTheBadField) {
  struct Case {
    std::map<std::string, std::string> env;
    std::string expect;
  } cases[] = {
      {{}, "MOONCAKE_MASTER"},
      {{{"MOONCAKE_MASTER", "nohostport"}}, "master_server_address"},
      {{{"MOONCAKE_MASTER", "h:99999"}}, "master_server_address"},
      {{{"MOONCAKE_MASTER", "h:1"}, {"MOONCAKE_PROTOCOL", "udp"}}, "MOONCAKE_PROTOCOL"},
      {{{"MOONCAKE_MASTER", "h:1"}, {"MOONCAKE_GLOBAL_SEGMENT_SIZE", "-4gb"}},
       "MOONCAKE_GLOBAL_SEGMENT_SIZE"},
      {{{"MOONCAKE_MASTER", "h:1"}, {"MOONCAKE_LOCAL_BUFFER_SIZE", "lots"}},
       "MOONCAKE_LOCAL_BUFFER_SIZE"},
      {{{"MOONCAKE_MASTER", "h:1"}, {"MOONCAKE_TE_META_DATA_SERVER", "http://nope/metadata"}},
       "MOONCAKE_TE_META_DATA_SERVER"},
      {{{"MOONCAKE_MASTER", "h:1"}, {"MOONCAKE_LOCAL_HOSTNAME", ""}}, "MOONCAKE_LOCAL_HOSTNAME"},
      {{{"MOONCAKE_MASTER", "h:1"}, {"MOONCAKE_DEVICE", "{not json"}}, "MOONCAKE_DEVICE"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ClientConfig> r = LoadClientConfigFromEnv(FakeEnv(c.env));
    ASSERT_FALSE(r.ok()) << c.expect;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.expect), absl::string_view::npos) << r.status();
  }
}

TEST(ClientConfigTest, AcceptsEtcdAndBareEndpoints) {
  for (const char* md : {"etcd://127.0.0.1:2379", "127.0.0.1:2379", "etcd://a:1,b:2"}) {
    absl::StatusOr<ClientConfig> c = LoadClientConfigFromEnv(
        FakeEnv({{"MOONCAKE_MASTER", "h:1"}, {"MOONCAKE_TE_META_DATA_SERVER", md}}));
    EXPECT_TRUE(c.ok()) << md << ": " << c.status();
  }
}

TEST(ClientConfigTest, JsonWithNumericAndStringSizes) {
  absl::StatusOr<ClientConfig> c = LoadClientConfigFromJson(R"({
    "local_hostname": "node1", "metadata_server": "P2PHANDSHAKE",
    "global_segment_size": "1.5gb", "local_buffer_size": 1048576,
    "protocol": "tcp", "device_name": {"0": ["mlx5_0"], "1": "mlx5_1"},
    "master_server_address": "10.1.1.1:50051"})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->global_segment_size, 1536ull << 20);
  EXPECT_EQ(c->local_buffer_size, 1u << 20);
  EXPECT_EQ(*DevicesForRank(c->device_name, 0), std::vector<std::string>{"mlx5_0"});
  EXPECT_EQ(*DevicesForRank(c->device_name, 1), std::vector<std::string>{"mlx5_1"});
}

TEST(ClientConfigTest, JsonRejectsUnknownFieldsBadTypesAndGarbage) {
  auto err = [](const char* text) {
    absl::StatusOr<ClientConfig> c = LoadClientConfigFromJson(text);
    EXPECT_FALSE(c.ok()) << text;
    return std::string(c.status().message());
  };
  EXPECT_NE(err(R"({"master_server_address":"h:1","protocl":"tcp"})").find("\"protocl\""),
            std::string::npos);
  EXPECT_NE(err(R"({"master_server_address":"h:1","global_segment_size":-1})")
                .find("global_segment_size"),
            std::string::npos);
  EXPECT_NE(err(R"({"master_server_address":5})").find("master_server_address"), std::string::npos);
  EXPECT_NE(err("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(err("[1,2]").find("JSON object"), std::string::npos);
}

TEST(ClientConfigTest, FileErrorsNameTheFile) {
  std::string path = ::testing::TempDir() + "/mc_config.json";
  {
    std::ofstream out(path);
    out << R"({"master_server_address": "127.0.0.1:50051", "protocol": "smoke-signals"})";
  }
  absl::StatusOr<ClientConfig> c = LoadClientConfigFromFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(path), absl::string_view::npos);
  EXPECT_NE(c.status().message().find("protocol"), absl::string_view::npos);
  EXPECT_EQ(LoadClientConfigFromFile(path + ".missing").status().code(),
            absl::StatusCode::kNotFound);
  std::remove(path.c_str());
}

TEST(DevicesForRankTest, CommaListAppliesToEveryRank) {
  EXPECT_EQ(*DevicesForRank("erdma_0, erdma_1", 3),
            (std::vector<std::string>{"erdma_0", "erdma_1"}));
  EXPECT_TRUE(DevicesForRank("", 0)->empty());
  EXPECT_EQ(DevicesForRank(R"({"0":"a"})", 1).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace mooncake
