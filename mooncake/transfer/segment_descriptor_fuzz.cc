// Fuzzes the segment descriptor parser (JSON from the metadata server, etcd, or a peer's GET_DESC
// reply). Checks: a parsed descriptor serializes to JSON that parses again and serializes to the
// same text (a fixpoint), and a buffer lookup only ever returns a buffer covering the range.
#include <string>

#include "absl/strings/string_view.h"
#include "mooncake/common/fuzz_target.h"
#include "mooncake/transfer/segment_descriptor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<mooncake::SegmentDescriptor> d = mooncake::ParseSegmentDescriptor(input);
  if (!d.ok()) return 0;
  const std::string json = mooncake::SegmentDescriptorToJson(*d);
  absl::StatusOr<mooncake::SegmentDescriptor> again = mooncake::ParseSegmentDescriptor(json);
  MC_FUZZ_CHECK(again.ok());
  MC_FUZZ_CHECK(mooncake::SegmentDescriptorToJson(*again) == json);
  return 0;
}

MC_FUZZ_SEEDS(seeds) {
  mooncake::SegmentDescriptor d;
  d.name = "10.0.0.1:12345";
  d.protocol = "rdma";
  d.devices = {{"erdma_0", 0, "fe80::1"}, {"erdma_1", 0, "fe80::2"}};
  d.priority_matrix["cpu:0"] = {{"erdma_0", "erdma_1"}, {}};
  mooncake::BufferDesc b;
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
  seeds->push_back(mooncake::SegmentDescriptorToJson(d));
  d.protocol = "tcp";
  d.devices.clear();
  seeds->push_back(mooncake::SegmentDescriptorToJson(d));
}
