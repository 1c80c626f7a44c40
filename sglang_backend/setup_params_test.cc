// Tests for the setup() argument rules: validation, ignored extras, refused tenants, dict keys.
#include "sglang_backend/setup_params.h"

#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace binding {
namespace {

SetupParams Valid() {
  SetupParams p;
  p.local_hostname = "127.0.0.1";
  p.metadata_server = "P2PHANDSHAKE";
  p.global_segment_size = 64 << 20;
  p.local_buffer_size = 16 << 20;
  p.protocol = "tcp";
  p.master_server_address = "127.0.0.1:50051";
  return p;
}

TEST(SetupParamsTest, BuildsTheClientConfig) {
  std::vector<std::string> notes;
  absl::StatusOr<StoreOptions> options = MakeStoreOptions(Valid(), &notes);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->config.local_hostname, "127.0.0.1");
  EXPECT_EQ(options->config.metadata_server, "P2PHANDSHAKE");
  EXPECT_EQ(options->config.global_segment_size, uint64_t{64} << 20);
  EXPECT_EQ(options->config.master_server_address, "127.0.0.1:50051");
  EXPECT_EQ(options->engine, nullptr);
  EXPECT_TRUE(notes.empty());
}

TEST(SetupParamsTest, PureClientHasNoSegment) {
  SetupParams p = Valid();
  p.global_segment_size = 0;
  std::vector<std::string> notes;
  absl::StatusOr<StoreOptions> options = MakeStoreOptions(p, &notes);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->config.global_segment_size, 0u);
}

TEST(SetupParamsTest, NormalizesProtocolAndWhitespace) {
  SetupParams p = Valid();
  p.protocol = " TCP ";
  p.master_server_address = " 127.0.0.1:50051 ";
  std::vector<std::string> notes;
  absl::StatusOr<StoreOptions> options = MakeStoreOptions(p, &notes);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->config.protocol, "tcp");
  EXPECT_EQ(options->config.master_server_address, "127.0.0.1:50051");
}

TEST(SetupParamsTest, InvalidArgumentsAreInvalidParams) {
  std::vector<std::string> notes;
  SetupParams no_master = Valid();
  no_master.master_server_address = "";
  absl::Status s = MakeStoreOptions(no_master, &notes).status();
  EXPECT_EQ(ToErrorCode(s), ErrorCode::INVALID_PARAMS);
  EXPECT_NE(std::string(s.message()).find("master_server_address"), std::string::npos) << s;

  SetupParams bad_protocol = Valid();
  bad_protocol.protocol = "carrier-pigeon";
  EXPECT_EQ(ToErrorCode(MakeStoreOptions(bad_protocol, &notes).status()),
            ErrorCode::INVALID_PARAMS);

  SetupParams bad_port = Valid();
  bad_port.master_server_address = "127.0.0.1:99999";
  EXPECT_EQ(ToErrorCode(MakeStoreOptions(bad_port, &notes).status()), ErrorCode::INVALID_PARAMS);

  SetupParams bad_http_port = Valid();
  bad_http_port.client_http_port = 70000;
  EXPECT_EQ(ToErrorCode(MakeStoreOptions(bad_http_port, &notes).status()),
            ErrorCode::INVALID_PARAMS);
}

TEST(SetupParamsTest, SsdOffloadKeywordsConfigureTheTierAndBadOnesNameTheField) {
  SetupParams p = Valid();
  p.enable_ssd_offload = true;
  p.ssd_offload_path = " /tmp/ssd ";
  std::vector<std::string> notes;
  absl::StatusOr<StoreOptions> options = MakeStoreOptions(p, &notes);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->config.enable_ssd_offload);
  EXPECT_EQ(options->config.ssd_offload_path, "/tmp/ssd");
  EXPECT_TRUE(notes.empty());

  p.ssd_offload_path = "relative/dir";
  absl::Status s = MakeStoreOptions(p, &notes).status();
  EXPECT_EQ(ToErrorCode(s), ErrorCode::INVALID_PARAMS);
  EXPECT_NE(std::string(s.message()).find("ssd_offload_path"), std::string::npos) << s;

  p.ssd_offload_path = "/tmp/ssd";
  p.global_segment_size = 0;  // a pure client has nothing to offload
  s = MakeStoreOptions(p, &notes).status();
  EXPECT_NE(std::string(s.message()).find("global_segment_size"), std::string::npos) << s;

  SetupParams path_only = Valid();
  path_only.ssd_offload_path = "/tmp/ssd";
  options = MakeStoreOptions(path_only, &notes);
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(options->config.enable_ssd_offload);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("enable_ssd_offload"), std::string::npos);
}

TEST(SetupParamsTest, UnsupportedExtrasAreIgnoredWithANote) {
  SetupParams p = Valid();
  p.enable_client_http_server = true;
  p.client_http_port = 9300;
  std::vector<std::string> notes;
  absl::StatusOr<StoreOptions> options = MakeStoreOptions(p, &notes);
  ASSERT_TRUE(options.ok()) << options.status();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("HTTP server"), std::string::npos);
}

TEST(SetupParamsTest, DefaultTenantIsAcceptedOthersAreNotSupported) {
  std::vector<std::string> notes;
  SetupParams p = Valid();
  p.tenant_id = "default";
  EXPECT_TRUE(MakeStoreOptions(p, &notes).ok());
  p.tenant_id = "team-a";
  absl::Status s = MakeStoreOptions(p, &notes).status();
  EXPECT_EQ(ToErrorCode(s), ErrorCode::NOT_SUPPORTED);
  EXPECT_NE(std::string(s.message()).find("team-a"), std::string::npos);
}

TEST(SetupParamsTest, RdmaDevicesFromACommaListOrARankMap) {
  std::vector<std::string> notes;
  SetupParams p = Valid();
  p.protocol = "rdma";
  p.rdma_devices = "erdma_0,erdma_1";
  absl::StatusOr<StoreOptions> options = MakeStoreOptions(p, &notes);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->engine_options.rdma_devices, (std::vector<std::string>{"erdma_0", "erdma_1"}));

  p.rdma_devices = R"({"0": ["mlx5_0", "mlx5_1"], "1": "mlx5_2"})";
  options = MakeStoreOptions(p, &notes);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->engine_options.rdma_devices, (std::vector<std::string>{"mlx5_0", "mlx5_1"}));
}

TEST(SetupParamsTest, DictKeysAcceptBothMooncakeSpellings) {
  SetupDictField f;
  ASSERT_TRUE(FindSetupDictField("device_name", &f));
  EXPECT_EQ(f, SetupDictField::kRdmaDevices);
  ASSERT_TRUE(FindSetupDictField("rdma_devices", &f));
  EXPECT_EQ(f, SetupDictField::kRdmaDevices);
  ASSERT_TRUE(FindSetupDictField("master_server_addr", &f));
  EXPECT_EQ(f, SetupDictField::kMasterServerAddress);
  ASSERT_TRUE(FindSetupDictField("master_server_address", &f));
  EXPECT_EQ(f, SetupDictField::kMasterServerAddress);
  EXPECT_FALSE(FindSetupDictField("master", &f));

  SetupKeyword k;
  ASSERT_TRUE(FindSetupKeyword("tenant_id", &k));
  EXPECT_EQ(k, SetupKeyword::kTenantId);
  EXPECT_FALSE(FindSetupKeyword("engine", &k));  // a parameter, handled separately
  EXPECT_FALSE(FindSetupKeyword("replica_num", &k));
}

}  // namespace
}  // namespace binding
}  // namespace mooncake
