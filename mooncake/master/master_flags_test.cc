#include "mooncake/master/master_flags.h"

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace {

using ::testing::HasSubstr;

TEST(MasterFlagsTest, DefaultsMatchMooncake) {
  absl::FlagSaver saver;
  auto o = MasterServerOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->port, 50051);
  EXPECT_EQ(o->bind_address, "0.0.0.0");
  EXPECT_EQ(o->metrics_port, 9003);
  EXPECT_EQ(o->http_metadata_server_port, 8080);
  EXPECT_FALSE(o->enable_http_metadata_server);
  EXPECT_EQ(o->service.default_kv_lease_ttl, absl::Milliseconds(10000));
  EXPECT_DOUBLE_EQ(o->service.eviction_high_watermark_ratio, 0.9);
  EXPECT_DOUBLE_EQ(o->service.eviction_ratio, 0.05);
  EXPECT_EQ(o->service.client_ttl, absl::Seconds(10));
}

TEST(MasterFlagsTest, ValuesAreCarriedOver) {
  absl::FlagSaver saver;
  absl::SetFlag(&FLAGS_port, 12345);
  absl::SetFlag(&FLAGS_bind_address, "127.0.0.1");
  absl::SetFlag(&FLAGS_default_kv_lease_ttl, 5000);
  absl::SetFlag(&FLAGS_eviction_high_watermark_ratio, 1.0);
  absl::SetFlag(&FLAGS_eviction_ratio, 0.2);
  absl::SetFlag(&FLAGS_client_ttl, 3);
  absl::SetFlag(&FLAGS_enable_http_metadata_server, true);
  absl::SetFlag(&FLAGS_http_metadata_server_host, "::1");
  auto o = MasterServerOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->port, 12345);
  EXPECT_EQ(o->bind_address, "127.0.0.1");
  EXPECT_EQ(o->service.default_kv_lease_ttl, absl::Milliseconds(5000));
  EXPECT_DOUBLE_EQ(o->service.eviction_high_watermark_ratio, 1.0);
  EXPECT_DOUBLE_EQ(o->service.eviction_ratio, 0.2);
  EXPECT_EQ(o->service.client_ttl, absl::Seconds(3));
  EXPECT_TRUE(o->enable_http_metadata_server);
  EXPECT_EQ(o->http_metadata_server_host, "::1");
}

// Each bad value is refused with a message that names the flag and the value.
template <typename T>
void ExpectBad(absl::Flag<T>* flag, T value, const std::string& expected) {
  absl::FlagSaver saver;
  absl::SetFlag(flag, value);
  auto o = MasterServerOptionsFromFlags();
  ASSERT_FALSE(o.ok()) << expected;
  EXPECT_EQ(ToErrorCode(o.status()), ErrorCode::INVALID_PARAMS);
  EXPECT_THAT(std::string(o.status().message()), HasSubstr(expected));
}

TEST(MasterFlagsTest, OutOfRangeValuesNameTheFlag) {
  ExpectBad(&FLAGS_port, 0, "--port=0");
  ExpectBad(&FLAGS_port, 65536, "--port=65536");
  ExpectBad(&FLAGS_metrics_port, -1, "--metrics_port=-1");
  ExpectBad(&FLAGS_http_metadata_server_port, 99999, "--http_metadata_server_port=99999");
  ExpectBad(&FLAGS_rpc_thread_num, 0, "--rpc_thread_num=0");
  ExpectBad(&FLAGS_default_kv_lease_ttl, uint64_t{0}, "--default_kv_lease_ttl=0");
  ExpectBad(&FLAGS_eviction_high_watermark_ratio, 0.0, "--eviction_high_watermark_ratio=0");
  ExpectBad(&FLAGS_eviction_high_watermark_ratio, 1.01, "--eviction_high_watermark_ratio=1.01");
  ExpectBad(&FLAGS_eviction_ratio, -0.5, "--eviction_ratio=-0.5");
  ExpectBad(&FLAGS_client_ttl, int64_t{0}, "--client_ttl=0");
  ExpectBad(&FLAGS_put_start_release_timeout_sec, int64_t{5}, "--put_start_release_timeout_sec=5");
  ExpectBad(&FLAGS_bind_address, std::string("example.com"), "--bind_address");
  ExpectBad(&FLAGS_http_metadata_server_host, std::string("300.1.1.1"),
            "--http_metadata_server_host");
}

TEST(MasterFlagsTest, HighAvailabilityFlagsAreParsedAndCheckedByName) {
  absl::FlagSaver saver;
  absl::SetFlag(&FLAGS_enable_ha, true);
  auto missing = MasterServerOptionsFromFlags();
  EXPECT_EQ(ToErrorCode(missing.status()), ErrorCode::INVALID_PARAMS);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--etcd_endpoints"));
  absl::SetFlag(&FLAGS_etcd_endpoints, "127.0.0.1:2379; 127.0.0.1:2479,127.0.0.1:2579");
  absl::SetFlag(&FLAGS_cluster_id, "prod-a");
  absl::SetFlag(&FLAGS_bind_address, "127.0.0.1");
  auto o = MasterServerOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->enable_ha);
  EXPECT_EQ(o->ha.etcd_endpoints,
            (std::vector<std::string>{"127.0.0.1:2379", "127.0.0.1:2479", "127.0.0.1:2579"}));
  EXPECT_EQ(o->ha.cluster_id, "prod-a");
  EXPECT_EQ(o->ha.advertise_host, "127.0.0.1");
  EXPECT_EQ(o->ha.lease_ttl_seconds, 2);
  ExpectBad(&FLAGS_cluster_id, std::string("a/b"), "--cluster_id=a/b");
  ExpectBad(&FLAGS_ha_lease_ttl, int64_t{0}, "--ha_lease_ttl=0");
  ExpectBad(&FLAGS_ha_ack_timeout_ms, int64_t{0}, "--ha_ack_timeout_ms=0");
  ExpectBad(&FLAGS_ha_replication_port, int32_t{70000}, "--ha_replication_port=70000");
}

}  // namespace
}  // namespace mooncake
