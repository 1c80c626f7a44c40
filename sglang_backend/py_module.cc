// The extension module `mooncake.store` (store.so): MooncakeDistributedStore, ReplicateConfig and
// MooncakeHostMemAllocator, plus the submodule `engine` that `mooncake/engine.py` re-exports as
// `mooncake.engine` (one shared object, so a store and a TransferEngine can share one engine).
#include <string>

#include "mooncake/common/mutex_mode.h"
#include "pybind11/pybind11.h"
#include "pybind11/stl.h"
#include "sglang_backend/py_engine.h"
#include "sglang_backend/py_store.h"

namespace py = pybind11;

PYBIND11_MODULE(store, m) {
  mooncake::UseProductionMutexMode();
  m.doc() = "Mooncake-compatible distributed KV-cache store client (mooncake-cpp).";
  mooncake::binding::BindStore(m);
  py::module_ engine = m.def_submodule("engine", "Mooncake-compatible transfer engine.");
  mooncake::binding::BindEngine(engine);
  // Close stores still open when the interpreter exits, so their segments are unmounted at once
  // instead of when the master's client_ttl runs out.
  // mooncake.store.MooncakeDistributedStoreAsync, imported on first use (PEP 562): it is Python
  // (mooncake/async_store.py) and subclasses this module's class.
  m.attr("__getattr__") = py::cpp_function([](const std::string& name) -> py::object {
    if (name == "MooncakeDistributedStoreAsync") {
      return py::module_::import("mooncake.async_store").attr(name.c_str());
    }
    throw py::attribute_error("module 'mooncake.store' has no attribute '" + name + "'");
  });
  py::module_::import("atexit").attr("register")(
      py::cpp_function([] { mooncake::binding::CloseAllStores(); }));
}
