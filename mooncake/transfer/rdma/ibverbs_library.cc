#include "mooncake/transfer/rdma/ibverbs_library.h"

#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mooncake {
namespace {

constexpr char kVersion[] = "IBVERBS_1.1";
constexpr char kInstallHint[] =
    "RDMA needs rdma-core on this host (Debian/Ubuntu: apt-get install rdma-core libibverbs1; "
    "RHEL/Fedora: dnf install rdma-core libibverbs); protocol=tcp and shared memory work without "
    "it";

// Binds `slot` to the IBVERBS_1.1 version of `name`; false if the library lacks it.
template <typename Fn>
bool Bind(void* handle, const char* name, Fn* slot) {
  void* symbol = dlvsym(handle, name, kVersion);
  *slot = reinterpret_cast<Fn>(symbol);
  return symbol != nullptr;
}

absl::StatusOr<std::unique_ptr<IbVerbsLibrary>> Open(const std::string& soname) {
  // RTLD_GLOBAL: providers (libmlx5, librxe, ...) that libibverbs loads resolve its symbols.
  void* handle = dlopen(soname.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(absl::StrCat("cannot load ", soname, " (",
                                                      why != nullptr ? why : "unknown reason",
                                                      "): ", kInstallHint));
  }
  auto lib = std::make_unique<IbVerbsLibrary>();
  const char* missing = nullptr;
#define MC_BIND_IBV(field)                                               \
  if (missing == nullptr && !Bind(handle, "ibv_" #field, &lib->field)) { \
    missing = "ibv_" #field;                                             \
  }
  MC_BIND_IBV(get_device_list)
  MC_BIND_IBV(free_device_list)
  MC_BIND_IBV(get_device_name)
  MC_BIND_IBV(open_device)
  MC_BIND_IBV(close_device)
  MC_BIND_IBV(query_device)
  MC_BIND_IBV(query_port)
  MC_BIND_IBV(query_gid)
  MC_BIND_IBV(alloc_pd)
  MC_BIND_IBV(dealloc_pd)
  MC_BIND_IBV(reg_mr)
  MC_BIND_IBV(dereg_mr)
  MC_BIND_IBV(create_cq)
  MC_BIND_IBV(destroy_cq)
  MC_BIND_IBV(create_qp)
  MC_BIND_IBV(destroy_qp)
  MC_BIND_IBV(modify_qp)
  MC_BIND_IBV(query_qp)
#undef MC_BIND_IBV
  if (missing != nullptr) {
    dlclose(handle);
    return absl::UnimplementedError(absl::StrCat(soname, " has no ", missing, "@", kVersion,
                                                 " (rdma-core too old?): ", kInstallHint));
  }
  return lib;
}

}  // namespace

absl::StatusOr<const IbVerbsLibrary*> IbVerbsLibrary::Load(const std::string& soname) {
  // Successful loads are kept for the process; a failed load is retried next time (rdma-core may
  // have been installed meanwhile).
  static std::mutex mu;
  static auto* loaded = new std::map<std::string, std::unique_ptr<IbVerbsLibrary>>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = loaded->find(soname);
  if (it != loaded->end()) return it->second.get();
  auto lib = Open(soname);
  if (!lib.ok()) return lib.status();
  return loaded->emplace(soname, std::move(*lib)).first->second.get();
}

}  // namespace mooncake
