#include "mooncake/transfer/segment_descriptor.h"

#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(SegmentDescriptorTest, RoundTripsMooncakeShapeAndExtensions) {
  SegmentDescriptor d;
  d.name = "10.0.0.1:12345";
  d.protocol = "rdma";
  d.devices = {{"erdma_0", 0, "fe80::1"}, {"erdma_1", 0, "fe80::2"}};
  d.priority_matrix["cpu:0"] = {{"erdma_0", "erdma_1"}, {}};
  BufferDesc b;
  b.addr = 0x7f0000000000;
  b.length = 4ull << 30;
  b.rkey = {11, 12};
  b.lkey = {21, 22};
  b.shm = true;
  d.buffers.push_back(b);
  d.host_id = "boot/123";
  d.shm_socket = "mooncake-shm-1";
  d.tcp_host = "10.0.0.1";
  d.tcp_port = 12345;

  std::string json = SegmentDescriptorToJson(d);
  for (const char* field : {"\"name\"", "\"protocol\"", "\"devices\"", "\"priority_matrix\"",
                            "\"buffers\"", "\"rkey\"", "\"lkey\"", "\"addr\"", "\"length\""}) {
    EXPECT_NE(json.find(field), std::string::npos) << field;
  }
  absl::StatusOr<SegmentDescriptor> back = ParseSegmentDescriptor(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->name, d.name);
  EXPECT_EQ(back->devices.size(), 2u);
  EXPECT_EQ(back->devices[1].name, "erdma_1");
  EXPECT_EQ(back->priority_matrix.at("cpu:0").first.size(), 2u);
  ASSERT_EQ(back->buffers.size(), 1u);
  EXPECT_EQ(back->buffers[0].addr, b.addr);
  EXPECT_EQ(back->buffers[0].length, b.length);
  EXPECT_EQ(back->buffers[0].rkey, b.rkey);
  EXPECT_TRUE(back->buffers[0].shm);
  EXPECT_EQ(back->tcp_port, 12345);
  EXPECT_EQ(back->FindBuffer(b.addr + 10, 100), &back->buffers[0]);
  EXPECT_EQ(back->FindBuffer(b.addr + b.length - 1, 2), nullptr);
}

TEST(SegmentDescriptorTest, AcceptsPlainMooncakeDescriptor) {
  // No extension fields: what a Mooncake engine would publish.
  absl::StatusOr<SegmentDescriptor> d = ParseSegmentDescriptor(
      R"({"name":"n1","protocol":"tcp","devices":[],"priority_matrix":{},
          "buffers":[{"name":"cpu:0","addr":4096,"length":8192,"rkey":[],"lkey":[]}]})");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->buffers[0].shm);
  EXPECT_TRUE(d->shm_socket.empty());
}

TEST(SegmentDescriptorTest, RejectsMalformedInputWithoutCrashing) {
  for (const char* bad : {"", "{", "[]", "null", R"({"name":"x"})", R"({"name":5,"buffers":[]})",
                          R"({"name":"x","buffers":[{"addr":"a","length":1}]})",
                          R"({"name":"x","buffers":[{"addr":-1,"length":1}]})",
                          R"({"name":"x","buffers":{}, "priority_matrix":{"a":[1]}})",
                          R"({"name":"","buffers":[]})"}) {
    EXPECT_FALSE(ParseSegmentDescriptor(bad).ok()) << bad;
  }
}

// Integer fields take integers in range only: a float such as 1e100 was converted with a
// static_cast (undefined behaviour, found by segment_descriptor_fuzz under UBSan).
TEST(SegmentDescriptorTest, RejectsFloatsAndOutOfRangeIntegers) {
  for (const char* bad :
       {R"({"name":"x","buffers":[],"tcp_port":1e100})",
        R"({"name":"x","buffers":[],"tcp_port":4294967296})",
        R"({"name":"x","buffers":[],"instance":-1})", R"({"name":"x","buffers":[],"instance":1.5})",
        R"({"name":"x","buffers":[],"devices":[{"name":"d","lid":-7}]})",
        R"({"name":"x","buffers":[{"addr":1,"length":1,"rkey":[1e30]}]})",
        R"({"name":"x","buffers":[{"addr":1,"length":1,"lkey":[4294967296]}]})"}) {
    absl::StatusOr<SegmentDescriptor> d = ParseSegmentDescriptor(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << bad << " " << d.status();
  }
  absl::StatusOr<SegmentDescriptor> ok = ParseSegmentDescriptor(
      R"({"name":"x","buffers":[{"addr":1,"length":1,"rkey":[4294967295]}],"tcp_port":65535})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->tcp_port, 65535);
  EXPECT_EQ(ok->buffers[0].rkey, std::vector<uint32_t>{4294967295u});
  EXPECT_FALSE(ParseRpcMeta(R"({"ip_or_host_name":"x","rpc_port":1e100})").ok());
}

TEST(RpcMetaTest, RoundTripAndValidation) {
  absl::StatusOr<RpcMeta> m = ParseRpcMeta(RpcMetaToJson({"node-1", 15001}));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->ip_or_host_name, "node-1");
  EXPECT_EQ(m->rpc_port, 15001);
  EXPECT_FALSE(ParseRpcMeta(R"({"ip_or_host_name":"x","rpc_port":0})").ok());
  EXPECT_FALSE(ParseRpcMeta(R"({"ip_or_host_name":"x"})").ok());
  EXPECT_EQ(SegmentDescriptorKey("a:1"), "mooncake/ram/a:1");
  EXPECT_EQ(RpcMetaKey("a:1"), "mooncake/rpc_meta/a:1");
}

}  // namespace
}  // namespace mooncake
