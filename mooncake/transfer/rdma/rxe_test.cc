// The RDMA transport on real verbs (soft-RoCE rxe or a hardware NIC), through the TransferEngine.
// Run tools/rxe_setup first. Devices: MC_RXE_DEVICES (default "rxe0"). On a machine without RDMA
// devices every test is skipped with the reason; the same transport runs in //sim/... there.
#include <string.h>

#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "mooncake/transfer/rdma/ib_verbs.h"
#include "mooncake/transfer/transfer_engine.h"

namespace mooncake {
namespace {

std::vector<std::string> Devices() {
  const char* env = std::getenv("MC_RXE_DEVICES");
  return absl::StrSplit(env ? env : "rxe0", ',', absl::SkipEmpty());
}

// Returns why RDMA cannot run here, or "" when the devices exist.
std::string Unavailable() {
  IbVerbs verbs;
  auto names = verbs.ListDevices();
  if (!names.ok()) return std::string(names.status().message());
  for (const std::string& want : Devices()) {
    if (std::find(names->begin(), names->end(), want) == names->end()) {
      return "RDMA device " + want + " not present (run tools/rxe_setup)";
    }
  }
  return "";
}

TEST(RxeTest, WriteThenReadBackOverRealVerbs) {
  std::string why = Unavailable();
  if (!why.empty()) GTEST_SKIP() << "soft-RoCE/RDMA unavailable on this machine: " << why;
  TransferEngineOptions o;
  o.local_server_name = "127.0.0.1";
  o.protocol = "rdma";
  o.rdma_devices = Devices();
  o.allow_shm = false;
  o.allow_local_memcpy = false;
  auto a = TransferEngine::Create(o);
  auto b = TransferEngine::Create(o);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  std::vector<char> remote(4 << 20, 0), local(4 << 20), back(4 << 20, 0);
  for (size_t i = 0; i < local.size(); ++i) local[i] = static_cast<char>(i * 13);
  ASSERT_TRUE((*b)->RegisterLocalMemory(remote.data(), remote.size()).ok());
  ASSERT_TRUE((*a)->RegisterLocalMemory(local.data(), local.size()).ok());
  ASSERT_TRUE((*a)->RegisterLocalMemory(back.data(), back.size()).ok());
  auto seg = (*a)->OpenSegment((*b)->segment_name());
  ASSERT_TRUE(seg.ok()) << seg.status();
  EXPECT_EQ(*(*a)->RouteTo(*seg), RouteKind::kRdma);
  uint64_t r = reinterpret_cast<uint64_t>(remote.data());
  using Op = TransferRequest::Opcode;
  auto st = (*a)->Transfer({{Op::kWrite, local.data(), *seg, r, local.size()}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  st = (*a)->Transfer({{Op::kRead, back.data(), *seg, r, back.size()}});
  ASSERT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(back, local);
  EXPECT_EQ(remote, local);
}

}  // namespace
}  // namespace mooncake
