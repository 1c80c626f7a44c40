// mooncake.store.MooncakeDistributedStore over mooncake::StoreClient (see py_store.h).
#include "sglang_backend/py_store.h"

#include <algorithm>
#include <mutex>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/standalone/host_mem_allocator.h"
#include "mooncake/standalone/standalone_client.h"
#include "pybind11/stl.h"
#include "sglang_backend/py_engine.h"
#include "sglang_backend/py_store_internal.h"

namespace py = pybind11;

namespace mooncake {
namespace binding {
namespace {

// Every live store, so CloseAllStores can reach them at interpreter exit.
absl::Mutex registry_mu(absl::kConstInit);
std::set<PyStore*>& Registry() {
  static auto* stores = new std::set<PyStore*>();
  return *stores;
}

}  // namespace

bool ToBufferRefs(const std::vector<PyBuffer>& in, std::vector<BufferRef>* out) {
  if (in.empty()) return false;
  out->clear();
  for (const PyBuffer& b : in) {
    if (b.ptr <= 0 || b.size <= 0) return false;
    out->push_back({AsPointer(b.ptr), static_cast<uint64_t>(b.size)});
  }
  return true;
}

bool ValidReplicaNum(const ReplicateConfig& config, absl::string_view method) {
  if (config.replica_num >= 1 && config.replica_num <= kMaxReplicaNum) return true;
  MC_LOG(ERROR) << "MooncakeDistributedStore." << method
                << ": ReplicateConfig.replica_num=" << config.replica_num << " must be in 1.."
                << kMaxReplicaNum;
  return false;
}

ReplicateConfig ConfigArg(const py::object& config) {
  if (config.is_none()) return ReplicateConfig();
  if (!py::isinstance<PyReplicateConfig>(config)) {
    throw py::type_error("config must be None or a mooncake.store.ReplicateConfig");
  }
  return config.cast<const PyReplicateConfig&>().ToReplicateConfig();
}

std::vector<std::vector<PyBuffer>> SingleBuffers(size_t keys, const std::vector<int64_t>& ptrs,
                                                 const std::vector<int64_t>& sizes) {
  std::vector<std::vector<PyBuffer>> out(keys);
  if (ptrs.size() != keys || sizes.size() != keys) return out;
  for (size_t i = 0; i < keys; ++i) out[i] = {{ptrs[i], sizes[i]}};
  return out;
}

ReplicateConfig PyReplicateConfig::ToReplicateConfig() const {
  ReplicateConfig c;
  c.replica_num = replica_num;
  c.with_soft_pin = with_soft_pin;
  c.with_hard_pin = with_hard_pin;
  if (!preferred_segment.empty()) c.preferred_segments.push_back(preferred_segment);
  for (const std::string& s : preferred_segments) {
    if (std::find(c.preferred_segments.begin(), c.preferred_segments.end(), s) ==
        c.preferred_segments.end()) {
      c.preferred_segments.push_back(s);
    }
  }
  return c;
}

PyStore::PyStore() {
  absl::MutexLock lock(&registry_mu);
  Registry().insert(this);
}

PyStore::~PyStore() {
  {
    absl::MutexLock lock(&registry_mu);
    Registry().erase(this);
  }
  Close();
}

void CloseAllStores() {
  std::set<PyStore*> stores;
  {
    absl::MutexLock lock(&registry_mu);
    stores = Registry();
  }
  // The GIL stays held, so no store can be destroyed meanwhile (destructors need it); Close runs
  // no Python code.
  for (PyStore* store : stores) store->Close();
}

StoreApi* PyStore::Client(std::shared_lock<std::shared_mutex>* lock, absl::string_view method) {
  *lock = std::shared_lock<std::shared_mutex>(mu_);
  if (client_ == nullptr) {
    MC_LOG(ERROR) << "MooncakeDistributedStore." << method
                  << ": the store is not set up (call setup() first)";
  }
  return client_.get();
}

int PyStore::Setup(const SetupParams& params, std::shared_ptr<TransferEngine> engine) {
  std::vector<std::string> notes;
  absl::StatusOr<StoreOptions> options = MakeStoreOptions(params, &notes);
  for (const std::string& note : notes) {
    MC_LOG(WARNING) << "MooncakeDistributedStore.setup: " << note;
  }
  if (!options.ok()) {
    MC_LOG(ERROR) << "MooncakeDistributedStore.setup failed: " << options.status().message();
    return ToPythonCode(options.status());
  }
  options->engine = engine.get();
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (client_ != nullptr) {
      MC_LOG(ERROR) << "MooncakeDistributedStore.setup: already set up as " << client_->hostname()
                    << "; call close() first";
      return kInvalidParams;
    }
  }
  absl::StatusOr<std::unique_ptr<StoreClient>> client = StoreClient::Create(*std::move(options));
  if (!client.ok()) {
    MC_LOG(ERROR) << "MooncakeDistributedStore.setup failed: " << client.status().message();
    return ToPythonCode(client.status());
  }
  return Install(*std::move(client), std::move(engine));
}

int PyStore::SetupDummy(uint64_t mem_pool_size, uint64_t local_buffer_size,
                        const std::string& server_address) {
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (client_ != nullptr) {
      MC_LOG(ERROR) << "MooncakeDistributedStore.setup_dummy: already set up as "
                    << client_->hostname() << "; call close() first";
      return kInvalidParams;
    }
  }
  StandaloneClientOptions options;
  options.address = server_address;
  if (local_buffer_size > 0) options.staging_bytes = local_buffer_size;
  absl::StatusOr<std::unique_ptr<StandaloneClient>> client =
      StandaloneClient::Connect(std::move(options));
  if (!client.ok()) {
    MC_LOG(ERROR) << "MooncakeDistributedStore.setup_dummy failed: " << client.status().message();
    return ToPythonCode(client.status());
  }
  MC_LOG(INFO) << "MooncakeDistributedStore: standalone mode through the storage process "
               << (*client)->hostname() << " at " << server_address << " (mem_pool_size "
               << FormatByteSize(mem_pool_size) << ")";
  return Install(*std::move(client), nullptr);
}

int PyStore::Install(std::unique_ptr<StoreApi> client, std::shared_ptr<TransferEngine> engine) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (client_ != nullptr) {  // another thread set up meanwhile
    MC_LOG(ERROR) << "MooncakeDistributedStore.setup: already set up as " << client_->hostname();
    lock.unlock();
    client->Close().IgnoreError();
    return kInvalidParams;
  }
  engine_ = std::move(engine);
  client_ = std::move(client);
  return 0;
}

int PyStore::Close() {
  std::unique_ptr<StoreApi> client;
  std::shared_ptr<TransferEngine> engine;
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    client = std::move(client_);
    engine = std::move(engine_);
  }
  if (client == nullptr) return 0;
  absl::Status s = client->Close();
  client.reset();  // before the shared engine it uses
  if (!s.ok()) {
    MC_LOG(WARNING) << "MooncakeDistributedStore.close: " << s.message();
    return ToPythonCode(s);
  }
  return 0;
}

int PyStore::RegisterBuffer(int64_t ptr, int64_t size) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "register_buffer");
  if (c == nullptr) return kNotSetUp;
  if (ptr <= 0 || size <= 0) {
    MC_LOG(ERROR) << "register_buffer(" << ptr << ", " << size << "): pointer and size must be > 0";
    return kInvalidParams;
  }
  absl::Status s = c->RegisterBuffer(AsPointer(ptr), static_cast<uint64_t>(size));
  if (!s.ok()) MC_LOG(ERROR) << "register_buffer: " << s.message();
  return ToPythonCode(s);
}

int PyStore::UnregisterBuffer(int64_t ptr) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "unregister_buffer");
  if (c == nullptr) return kNotSetUp;
  absl::Status s = c->UnregisterBuffer(AsPointer(ptr));
  if (!s.ok()) MC_LOG(ERROR) << "unregister_buffer: " << s.message();
  return ToPythonCode(s);
}

int PyStore::Put(const std::string& key, absl::string_view value, const ReplicateConfig& config) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "put");
  if (c == nullptr) return kNotSetUp;
  if (key.empty()) return static_cast<int>(ErrorCode::INVALID_KEY);
  if (!ValidReplicaNum(config, "put")) return kInvalidParams;
  return c->PutBytes(key, value, config);
}

std::string PyStore::Get(const std::string& key, int* code) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "get");
  if (c == nullptr) {
    *code = kNotSetUp;
    return "";
  }
  if (key.empty()) {
    *code = static_cast<int>(ErrorCode::INVALID_KEY);
    return "";
  }
  absl::StatusOr<std::string> value = c->GetBytes(key);
  if (!value.ok()) {
    *code = ToPythonCode(value.status());
    return "";
  }
  *code = 0;
  return *std::move(value);
}

int PyStore::IsExist(const std::string& key) { return BatchIsExist({key})[0]; }

std::vector<int> PyStore::BatchIsExist(const std::vector<std::string>& keys) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "batch_is_exist");
  if (c == nullptr) return std::vector<int>(keys.size(), kNotSetUp);
  return c->BatchIsExist(keys);
}

int64_t PyStore::GetSize(const std::string& key) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "get_size");
  if (c == nullptr) return kNotSetUp;
  return c->GetSize(key);
}

std::vector<int> PyStore::BatchPutFrom(const std::vector<std::string>& keys,
                                       const std::vector<std::vector<PyBuffer>>& buffers,
                                       const ReplicateConfig& config) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "batch_put_from");
  if (c == nullptr) return std::vector<int>(keys.size(), kNotSetUp);
  return ForValidKeys<int>(keys, buffers,
                           [&](const auto& k, const auto& b) { return c->BatchPut(k, b, config); });
}

std::vector<int64_t> PyStore::BatchGetInto(const std::vector<std::string>& keys,
                                           const std::vector<std::vector<PyBuffer>>& buffers) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "batch_get_into");
  if (c == nullptr) return std::vector<int64_t>(keys.size(), kNotSetUp);
  return ForValidKeys<int64_t>(keys, buffers,
                               [&](const auto& k, const auto& b) { return c->BatchGet(k, b); });
}

int PyStore::Remove(const std::string& key, bool force) { return BatchRemove({key}, force)[0]; }

std::vector<int> PyStore::BatchRemove(const std::vector<std::string>& keys, bool force) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "remove");
  if (c == nullptr) return std::vector<int>(keys.size(), kNotSetUp);
  return c->BatchRemove(keys, force);
}

int64_t PyStore::RemoveByRegex(const std::string& regex, bool force) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "remove_by_regex");
  if (c == nullptr) return kNotSetUp;
  return c->RemoveByRegex(regex, force);
}

int64_t PyStore::RemoveAll(bool force) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "remove_all");
  if (c == nullptr) return kNotSetUp;
  return c->RemoveAll(force);
}

std::string PyStore::Hostname() {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return client_ == nullptr ? "" : client_->hostname();
}

// ---------------------------------------------------------------------------------------------
// Python argument conversion. Type errors raise TypeError; bad values return a code.

namespace {

const char* const kPositional[] = {"local_hostname",     "metadata_server", "global_segment_size",
                                   "local_buffer_size",  "protocol",        "rdma_devices",
                                   "master_server_addr", "engine"};
constexpr int kRequiredPositional = 7;

int PositionalIndex(const std::string& name) {
  for (int i = 0; i < 8; ++i) {
    if (name == kPositional[i]) return i;
  }
  if (name == "device_name") return 5;
  if (name == "master_server_address") return 6;
  return -1;
}

std::string StrArg(py::handle value, const std::string& name) {
  if (value.is_none()) return "";
  if (!py::isinstance<py::str>(value)) {
    throw py::type_error(absl::StrCat("setup(): ", name, " must be a str, not ",
                                      std::string(py::str(value.get_type().attr("__name__")))));
  }
  return value.cast<std::string>();
}

// A byte size: a non-negative int or a string such as "4gb".
absl::StatusOr<uint64_t> SizeArg(py::handle value, const std::string& name) {
  if (py::isinstance<py::bool_>(value) ||
      !(py::isinstance<py::int_>(value) || py::isinstance<py::str>(value))) {
    throw py::type_error(absl::StrCat("setup(): ", name,
                                      " must be an int or a str such as \"4gb\", not ",
                                      std::string(py::str(value.get_type().attr("__name__")))));
  }
  if (py::isinstance<py::str>(value)) {
    const std::string text = value.cast<std::string>();
    absl::StatusOr<uint64_t> parsed = ParseByteSize(text);
    if (!parsed.ok()) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat(name, "=\"", text, "\": ", parsed.status().message()));
    }
    return *parsed;
  }
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);  // NOLINT(runtime/int)
  if (overflow != 0 || v < 0) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat(name, "=", std::string(py::str(value)),
                                  ": expected a byte count from 0 to 2^63-1"));
  }
  return static_cast<uint64_t>(v);
}

bool TruthArg(py::handle value) { return PyObject_IsTrue(value.ptr()) == 1; }

int64_t IntArg(py::handle value, const std::string& name) {
  if (value.is_none()) return 0;
  if (!py::isinstance<py::int_>(value)) {
    throw py::type_error(absl::StrCat("setup(): ", name, " must be an int"));
  }
  return value.cast<int64_t>();
}

void ApplyKeyword(SetupKeyword keyword, const std::string& name, py::handle value,
                  SetupParams* params) {
  switch (keyword) {
    case SetupKeyword::kEnableSsdOffload:
      params->enable_ssd_offload = TruthArg(value);
      break;
    case SetupKeyword::kSsdOffloadPath:
      params->ssd_offload_path = StrArg(value, name);
      break;
    case SetupKeyword::kTenantId:
      params->tenant_id = StrArg(value, name);
      break;
    case SetupKeyword::kEnableClientHttpServer:
      params->enable_client_http_server = TruthArg(value);
      break;
    case SetupKeyword::kClientHttpPort:
      params->client_http_port = IntArg(value, name);
      break;
  }
}

// Fills the seven core parameters from their Python values; sizes may fail with a code.
absl::Status ApplyCore(const py::object (&values)[8], SetupParams* params) {
  params->local_hostname = StrArg(values[0], kPositional[0]);
  params->metadata_server = StrArg(values[1], kPositional[1]);
  absl::StatusOr<uint64_t> segment = SizeArg(values[2], kPositional[2]);
  absl::StatusOr<uint64_t> buffer = SizeArg(values[3], kPositional[3]);
  params->protocol = StrArg(values[4], kPositional[4]);
  params->rdma_devices = StrArg(values[5], kPositional[5]);
  params->master_server_address = StrArg(values[6], kPositional[6]);
  if (!segment.ok()) return segment.status();
  if (!buffer.ok()) return buffer.status();
  params->global_segment_size = *segment;
  params->local_buffer_size = *buffer;
  return absl::OkStatus();
}

// The engine argument: None, an EngineHandle, or an initialized mooncake.engine.TransferEngine.
absl::StatusOr<std::shared_ptr<TransferEngine>> EngineArg(py::handle value) {
  if (value.is_none()) return std::shared_ptr<TransferEngine>();
  if (py::isinstance<EngineHandle>(value)) return value.cast<const EngineHandle&>().engine;
  if (py::isinstance<PyTransferEngine>(value)) {
    std::shared_ptr<TransferEngine> e = value.cast<const PyTransferEngine&>().engine();
    if (e == nullptr) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       "engine: the TransferEngine is not initialized (initialize() first)");
    }
    return e;
  }
  throw py::type_error(
      "setup(): engine must be None or come from mooncake.engine.TransferEngine.get_engine()");
}

int SetupWithValues(PyStore& self, const SetupParams& params, py::handle engine_value) {
  absl::StatusOr<std::shared_ptr<TransferEngine>> engine = EngineArg(engine_value);
  if (!engine.ok()) {
    MC_LOG(ERROR) << "MooncakeDistributedStore.setup failed: " << engine.status().message();
    return ToPythonCode(engine.status());
  }
  py::gil_scoped_release release;
  return self.Setup(params, *std::move(engine));
}

int FailSetup(const absl::Status& status) {
  MC_LOG(ERROR) << "MooncakeDistributedStore.setup failed: " << status.message();
  return ToPythonCode(status);
}

int SetupFromDict(PyStore& self, const py::dict& config) {
  py::object values[8];
  SetupParams params;
  // Defaults for the core fields when the dict leaves them out.
  values[0] = py::str(params.local_hostname);
  values[1] = py::str(params.metadata_server);
  values[2] = py::int_(params.global_segment_size);
  values[3] = py::int_(params.local_buffer_size);
  values[4] = py::str(params.protocol);
  values[5] = py::str("");
  values[6] = py::str("");
  values[7] = py::none();
  for (auto item : config) {
    const std::string name = py::str(item.first);
    SetupDictField field;
    if (!FindSetupDictField(name, &field)) {
      if (name == "engine") {
        values[7] = py::reinterpret_borrow<py::object>(item.second);
        continue;
      }
      return FailSetup(MakeError(ErrorCode::INVALID_PARAMS,
                                 absl::StrCat("setup(config): unknown key \"", name, "\"")));
    }
    switch (field) {
      case SetupDictField::kLocalHostname:
      case SetupDictField::kMetadataServer:
      case SetupDictField::kGlobalSegmentSize:
      case SetupDictField::kLocalBufferSize:
      case SetupDictField::kProtocol:
      case SetupDictField::kRdmaDevices:
      case SetupDictField::kMasterServerAddress:
        values[static_cast<int>(field)] = py::reinterpret_borrow<py::object>(item.second);
        break;
      case SetupDictField::kEnableSsdOffload:
        params.enable_ssd_offload = TruthArg(item.second);
        break;
      case SetupDictField::kSsdOffloadPath:
        params.ssd_offload_path = StrArg(item.second, name);
        break;
      case SetupDictField::kTenantId:
        params.tenant_id = StrArg(item.second, name);
        break;
      case SetupDictField::kEnableClientHttpServer:
        params.enable_client_http_server = TruthArg(item.second);
        break;
      case SetupDictField::kClientHttpPort:
        params.client_http_port = IntArg(item.second, name);
        break;
    }
  }
  if (absl::Status s = ApplyCore(values, &params); !s.ok()) return FailSetup(s);
  return SetupWithValues(self, params, values[7]);
}

int SetupFromPython(PyStore& self, const py::args& args, const py::kwargs& kwargs) {
  if (args.size() == 1 && kwargs.empty() && py::isinstance<py::dict>(args[0])) {
    return SetupFromDict(self, args[0].cast<py::dict>());
  }
  if (args.size() > 8) {
    throw py::type_error(
        absl::StrCat("setup() takes at most 8 positional arguments (", args.size(), " given)"));
  }
  py::object values[8];
  bool present[8] = {false};
  for (size_t i = 0; i < args.size(); ++i) {
    values[i] = args[i];
    present[i] = true;
  }
  SetupParams params;
  for (auto item : kwargs) {
    const std::string name = py::str(item.first);
    const int pos = PositionalIndex(name);
    if (pos >= 0) {
      if (present[pos]) {
        throw py::type_error(
            absl::StrCat("setup() got multiple values for argument '", kPositional[pos], "'"));
      }
      values[pos] = py::reinterpret_borrow<py::object>(item.second);
      present[pos] = true;
      continue;
    }
    SetupKeyword keyword;
    if (!FindSetupKeyword(name, &keyword)) {
      throw py::type_error(absl::StrCat("setup() got an unexpected keyword argument '", name, "'"));
    }
    ApplyKeyword(keyword, name, item.second, &params);
  }
  for (int i = 0; i < kRequiredPositional; ++i) {
    if (!present[i]) {
      throw py::type_error(
          absl::StrCat("setup() missing required argument '", kPositional[i], "'"));
    }
  }
  if (!present[7]) values[7] = py::none();
  if (absl::Status s = ApplyCore(values, &params); !s.ok()) return FailSetup(s);
  return SetupWithValues(self, params, values[7]);
}

std::vector<std::vector<PyBuffer>> MultiBuffers(size_t keys,
                                                const std::vector<std::vector<int64_t>>& ptrs,
                                                const std::vector<std::vector<int64_t>>& sizes) {
  std::vector<std::vector<PyBuffer>> out(keys);
  if (ptrs.size() != keys || sizes.size() != keys) return out;
  for (size_t i = 0; i < keys; ++i) {
    if (ptrs[i].size() != sizes[i].size()) continue;  // this key alone is INVALID_PARAMS
    for (size_t j = 0; j < ptrs[i].size(); ++j) out[i].push_back({ptrs[i][j], sizes[i][j]});
  }
  return out;
}

class PyHostMemAllocator {
 public:
  int64_t Alloc(int64_t size) {
    if (size <= 0) {
      MC_LOG(ERROR) << "MooncakeHostMemAllocator.alloc(" << size << "): size must be > 0";
      return 0;
    }
    absl::StatusOr<void*> p = allocator_.Alloc(static_cast<uint64_t>(size));
    if (!p.ok()) {
      MC_LOG(ERROR) << "MooncakeHostMemAllocator." << p.status().message();
      return 0;
    }
    return static_cast<int64_t>(reinterpret_cast<uintptr_t>(*p));
  }
  int Free(int64_t ptr) {
    absl::Status s = allocator_.Free(AsPointer(ptr));
    if (!s.ok()) MC_LOG(ERROR) << "MooncakeHostMemAllocator." << s.message();
    return ToPythonCode(s);
  }

 private:
  HostMemAllocator allocator_;
};

}  // namespace

void BindStore(py::module_& m) {
  py::class_<PyReplicateConfig>(m, "ReplicateConfig")
      .def(py::init<>())
      .def_readwrite("replica_num", &PyReplicateConfig::replica_num)
      .def_readwrite("with_soft_pin", &PyReplicateConfig::with_soft_pin)
      .def_readwrite("with_hard_pin", &PyReplicateConfig::with_hard_pin)
      .def_readwrite("preferred_segment", &PyReplicateConfig::preferred_segment)
      .def_readwrite("preferred_segments", &PyReplicateConfig::preferred_segments)
      .def_readwrite("group_ids", &PyReplicateConfig::group_ids)
      .def_readwrite("prefer_alloc_in_same_node", &PyReplicateConfig::prefer_alloc_in_same_node)
      .def("__repr__", [](const PyReplicateConfig& c) {
        return absl::StrCat("ReplicateConfig(replica_num=", c.replica_num,
                            ", with_soft_pin=", c.with_soft_pin ? "True" : "False",
                            ", with_hard_pin=", c.with_hard_pin ? "True" : "False",
                            ", preferred_segment='", c.preferred_segment, "')");
      });

  py::class_<PyHostMemAllocator>(m, "MooncakeHostMemAllocator",
                                 "Page-aligned host memory for the L2 pool; reserves address "
                                 "space without touching pages (MAP_NORESERVE).")
      .def(py::init<>())
      .def("alloc", &PyHostMemAllocator::Alloc, py::arg("size"),
           py::call_guard<py::gil_scoped_release>(), "Address of `size` zeroed bytes, or 0.")
      .def("free", &PyHostMemAllocator::Free, py::arg("ptr"),
           py::call_guard<py::gil_scoped_release>());

  using S = PyStore;
  using Release = py::call_guard<py::gil_scoped_release>;
  py::class_<S> store(m, "MooncakeDistributedStore");
  store.def(py::init<>())
      .def("setup", &SetupFromPython,
           "setup(local_hostname, metadata_server, global_segment_size, local_buffer_size, "
           "protocol, rdma_devices, master_server_addr, engine=None, *, enable_ssd_offload=False, "
           "ssd_offload_path=None, tenant_id=None, enable_client_http_server=False, "
           "client_http_port=0) or setup(config: dict) -> int (0 = ok). Sizes are ints or "
           "strings such as \"4gb\".")
      .def(
          "setup_dummy",
          [](S& self, py::object mem_pool_size, py::object local_buffer_size,
             const std::string& server_address) {
            absl::StatusOr<uint64_t> pool = SizeArg(mem_pool_size, "mem_pool_size");
            absl::StatusOr<uint64_t> buffer = SizeArg(local_buffer_size, "local_buffer_size");
            if (!pool.ok()) return FailSetup(pool.status());
            if (!buffer.ok()) return FailSetup(buffer.status());
            py::gil_scoped_release release;
            return self.SetupDummy(*pool, *buffer, server_address);
          },
          py::arg("mem_pool_size"), py::arg("local_buffer_size"), py::arg("server_address"),
          "Standalone mode: use the storage process (mooncake_client) on this host at "
          "server_address (\"127.0.0.1:50052\"). 0 or a negative code.")
      .def("close", &S::Close, Release())
      .def("get_hostname", &S::Hostname, Release())
      .def("register_buffer", &S::RegisterBuffer, py::arg("buffer_ptr"), py::arg("size"), Release())
      .def("unregister_buffer", &S::UnregisterBuffer, py::arg("buffer_ptr"), Release())
      .def(
          "put",
          [](S& self, const std::string& key, py::handle value, py::object config) {
            ReplicateConfig c = ConfigArg(config);
            BytesView view(value);
            py::gil_scoped_release release;
            return self.Put(key, view.data(), c);
          },
          py::arg("key"), py::arg("value"), py::arg("config") = py::none())
      .def(
          "get",
          [](S& self, const std::string& key) {
            std::string value;
            {
              py::gil_scoped_release release;
              int code = 0;
              value = self.Get(key, &code);
            }
            return py::bytes(value);
          },
          py::arg("key"))
      .def("is_exist", &S::IsExist, py::arg("key"), Release())
      .def("batch_is_exist", &S::BatchIsExist, py::arg("keys"), Release())
      .def("get_size", &S::GetSize, py::arg("key"), Release())
      .def(
          "put_from",
          [](S& self, const std::string& key, int64_t ptr, int64_t size, py::object config) {
            ReplicateConfig c = ConfigArg(config);
            py::gil_scoped_release release;
            return self.BatchPutFrom({key}, {{{ptr, size}}}, c)[0];
          },
          py::arg("key"), py::arg("buffer_ptr"), py::arg("size"), py::arg("config") = py::none())
      .def(
          "get_into",
          [](S& self, const std::string& key, int64_t ptr, int64_t size) {
            return self.BatchGetInto({key}, {{{ptr, size}}})[0];
          },
          py::arg("key"), py::arg("buffer_ptr"), py::arg("size"), Release())
      .def(
          "batch_put_from",
          [](S& self, const std::vector<std::string>& keys, const std::vector<int64_t>& ptrs,
             const std::vector<int64_t>& sizes, py::object config) {
            ReplicateConfig c = ConfigArg(config);
            py::gil_scoped_release release;
            return self.BatchPutFrom(keys, SingleBuffers(keys.size(), ptrs, sizes), c);
          },
          py::arg("keys"), py::arg("buffer_ptrs"), py::arg("sizes"), py::arg("config") = py::none())
      .def(
          "batch_get_into",
          [](S& self, const std::vector<std::string>& keys, const std::vector<int64_t>& ptrs,
             const std::vector<int64_t>& sizes) {
            return self.BatchGetInto(keys, SingleBuffers(keys.size(), ptrs, sizes));
          },
          py::arg("keys"), py::arg("buffer_ptrs"), py::arg("sizes"), Release())
      .def(
          "batch_put_from_multi_buffers",
          [](S& self, const std::vector<std::string>& keys,
             const std::vector<std::vector<int64_t>>& ptrs,
             const std::vector<std::vector<int64_t>>& sizes, py::object config) {
            ReplicateConfig c = ConfigArg(config);
            py::gil_scoped_release release;
            return self.BatchPutFrom(keys, MultiBuffers(keys.size(), ptrs, sizes), c);
          },
          py::arg("keys"), py::arg("all_buffer_ptrs"), py::arg("all_sizes"),
          py::arg("config") = py::none())
      .def(
          "batch_get_into_multi_buffers",
          [](S& self, const std::vector<std::string>& keys,
             const std::vector<std::vector<int64_t>>& ptrs,
             const std::vector<std::vector<int64_t>>& sizes, bool /*prefer_alloc_in_same_node*/) {
            return self.BatchGetInto(keys, MultiBuffers(keys.size(), ptrs, sizes));
          },
          py::arg("keys"), py::arg("all_buffer_ptrs"), py::arg("all_sizes"),
          py::arg("prefer_alloc_in_same_node") = false, Release())
      .def("remove", &S::Remove, py::arg("key"), py::arg("force") = false, Release())
      .def("batch_remove", &S::BatchRemove, py::arg("keys"), py::arg("force") = false, Release())
      .def("remove_by_regex", &S::RemoveByRegex, py::arg("regex"), py::arg("force") = false,
           Release())
      .def("remove_all", &S::RemoveAll, py::arg("force") = false, Release());
  BindStoreValues(m, store);
}

}  // namespace binding
}  // namespace mooncake
