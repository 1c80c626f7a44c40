// libibverbs loaded at run time: what a host without rdma-core (or with a broken one) sees, and
// that the host's own library binds when it is there (tools/setup installs rdma-core).
#include "mooncake/transfer/rdma/ibverbs_library.h"

#include <dlfcn.h>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mooncake/transfer/rdma/ib_verbs.h"

namespace mooncake {
namespace {

using ::testing::HasSubstr;

constexpr char kMissing[] = "libmooncake-test-no-such-ibverbs.so.1";

TEST(IbVerbsLibraryTest, MissingLibrarySaysRdmaCoreIsMissing) {
  auto lib = IbVerbsLibrary::Load(kMissing);
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(lib.status().message(), HasSubstr(kMissing));
  EXPECT_THAT(lib.status().message(), HasSubstr("rdma-core"));
  EXPECT_THAT(lib.status().message(), HasSubstr("protocol=tcp"));
}

TEST(IbVerbsLibraryTest, EveryVerbFailsCleanlyWithoutTheLibrary) {
  IbVerbs verbs(kMissing);
  auto devices = verbs.ListDevices();
  ASSERT_FALSE(devices.ok());
  EXPECT_EQ(devices.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(devices.status().message(), HasSubstr("rdma-core"));
  auto context = verbs.OpenDevice("erdma_0");
  EXPECT_EQ(context.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(verbs.CloseDevice(nullptr).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(verbs.RegMr(nullptr, nullptr, 0, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(IbVerbsLibraryTest, LibraryWithoutTheVerbsIsRefusedByName) {
  // libc is loadable but exports no ibv_* symbol: the error names the first one missing.
  auto lib = IbVerbsLibrary::Load("libc.so.6");
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(lib.status().message(), HasSubstr("ibv_get_device_list@IBVERBS_1.1"));
}

TEST(IbVerbsLibraryTest, HostLibraryBindsEverySymbolOnce) {
  auto lib = IbVerbsLibrary::Load();
  ASSERT_TRUE(lib.ok()) << lib.status() << " (tools/setup installs rdma-core)";
  const IbVerbsLibrary& ibv = **lib;
  for (const void* fn :
       {reinterpret_cast<const void*>(ibv.get_device_list),
        reinterpret_cast<const void*>(ibv.open_device), reinterpret_cast<const void*>(ibv.reg_mr),
        reinterpret_cast<const void*>(ibv.create_qp), reinterpret_cast<const void*>(ibv.query_qp),
        reinterpret_cast<const void*>(ibv.query_port)}) {
    EXPECT_NE(fn, nullptr);
  }
  auto again = IbVerbsLibrary::Load();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *lib);
  // Bound to the 1.1 ABI, not the legacy 1.0 one an unversioned reference binds to.
  void* handle = dlopen(kIbVerbsSoname, RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(handle, nullptr);
  EXPECT_EQ(reinterpret_cast<void*>(ibv.open_device),
            dlvsym(handle, "ibv_open_device", "IBVERBS_1.1"));
  EXPECT_NE(reinterpret_cast<void*>(ibv.open_device),
            dlvsym(handle, "ibv_open_device", "IBVERBS_1.0"));
  dlclose(handle);
  // With the library present, listing devices reaches the kernel (this host may have none).
  IbVerbs verbs;
  auto devices = verbs.ListDevices();
  if (!devices.ok()) {
    EXPECT_NE(devices.status().code(), absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace mooncake
