// mooncake.engine.TransferEngine over mooncake::TransferEngine (see py_engine.h).
#include "sglang_backend/py_engine.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "pybind11/stl.h"

namespace py = pybind11;

namespace mooncake {
namespace binding {
namespace {

constexpr int kInvalidParams = static_cast<int>(ErrorCode::INVALID_PARAMS);
constexpr int kNotInitialized = static_cast<int>(ErrorCode::INTERNAL_ERROR);

int Fail(const absl::Status& status, absl::string_view what) {
  MC_LOG(ERROR) << "TransferEngine." << what << ": " << status.message();
  return ToPythonCode(status);
}

int NotInitialized(absl::string_view what) {
  MC_LOG(ERROR) << "TransferEngine." << what << ": initialize() has not succeeded";
  return kNotInitialized;
}

void* AsPointer(int64_t value) { return reinterpret_cast<void*>(static_cast<uintptr_t>(value)); }

}  // namespace

PyTransferEngine::~PyTransferEngine() {
  absl::MutexLock lock(&mu_);
  if (engine_ != nullptr) {
    for (const auto& [addr, length] : managed_) {
      engine_->FreeSharedMemory(AsPointer(addr)).IgnoreError();
    }
  }
  managed_.clear();
}

int PyTransferEngine::Initialize(const std::string& local_hostname,
                                 const std::string& metadata_server, const std::string& protocol,
                                 const std::string& device_name) {
  {
    absl::MutexLock lock(&mu_);
    if (engine_ != nullptr) {
      MC_LOG(ERROR) << "TransferEngine.initialize: already initialized as "
                    << engine_->segment_name();
      return kInvalidParams;
    }
  }
  TransferEngineOptions options;
  options.local_server_name = std::string(absl::StripAsciiWhitespace(local_hostname));
  options.metadata_server = std::string(absl::StripAsciiWhitespace(metadata_server));
  if (options.metadata_server.empty()) options.metadata_server = "P2PHANDSHAKE";
  options.protocol = absl::AsciiStrToLower(absl::StripAsciiWhitespace(protocol));
  if (options.protocol.empty()) options.protocol = "tcp";
  options.rdma_devices = absl::StrSplit(device_name, ',', absl::SkipWhitespace());
  for (std::string& d : options.rdma_devices) d = std::string(absl::StripAsciiWhitespace(d));
  if (options.local_server_name.empty()) {
    MC_LOG(ERROR) << "TransferEngine.initialize: local_hostname is empty";
    return kInvalidParams;
  }
  if (absl::Status s = options.ApplyEnv(); !s.ok()) return Fail(s, "initialize");
  absl::StatusOr<std::unique_ptr<TransferEngine>> created = TransferEngine::Create(options);
  if (!created.ok()) return Fail(created.status(), "initialize");
  absl::MutexLock lock(&mu_);
  if (engine_ != nullptr) return kInvalidParams;  // lost a race with another initialize()
  engine_ = std::shared_ptr<TransferEngine>(std::move(*created));
  MC_LOG(INFO) << "transfer engine " << engine_->segment_name() << " up (" << options.protocol
               << ", metadata " << options.metadata_server << ")";
  return 0;
}

std::shared_ptr<TransferEngine> PyTransferEngine::engine() const {
  absl::MutexLock lock(&mu_);
  return engine_;
}

int PyTransferEngine::RpcPort() const {
  std::shared_ptr<TransferEngine> e = engine();
  return e == nullptr ? -1 : e->rpc_port();
}

std::string PyTransferEngine::SegmentName() const {
  std::shared_ptr<TransferEngine> e = engine();
  return e == nullptr ? "" : e->segment_name();
}

int PyTransferEngine::RegisterMemory(int64_t ptr, int64_t length) {
  std::shared_ptr<TransferEngine> e = engine();
  if (e == nullptr) return NotInitialized("register_memory");
  if (ptr <= 0 || length <= 0) return kInvalidParams;
  absl::Status s = e->RegisterLocalMemory(AsPointer(ptr), static_cast<uint64_t>(length));
  return s.ok() ? 0 : Fail(s, "register_memory");
}

int PyTransferEngine::UnregisterMemory(int64_t ptr) {
  std::shared_ptr<TransferEngine> e = engine();
  if (e == nullptr) return NotInitialized("unregister_memory");
  absl::Status s = e->UnregisterLocalMemory(AsPointer(ptr));
  return s.ok() ? 0 : Fail(s, "unregister_memory");
}

int PyTransferEngine::BatchRegisterMemory(const std::vector<int64_t>& ptrs,
                                          const std::vector<int64_t>& lengths) {
  if (ptrs.size() != lengths.size()) return kInvalidParams;
  int rc = 0;
  for (size_t i = 0; i < ptrs.size(); ++i) {
    int r = RegisterMemory(ptrs[i], lengths[i]);
    if (r != 0 && rc == 0) rc = r;
  }
  return rc;
}

int PyTransferEngine::BatchUnregisterMemory(const std::vector<int64_t>& ptrs) {
  int rc = 0;
  for (int64_t p : ptrs) {
    int r = UnregisterMemory(p);
    if (r != 0 && rc == 0) rc = r;
  }
  return rc;
}

int PyTransferEngine::TransferSync(const std::string& target, TransferRequest::Opcode opcode,
                                   const std::vector<int64_t>& buffers,
                                   const std::vector<int64_t>& peer_addresses,
                                   const std::vector<int64_t>& lengths) {
  std::shared_ptr<TransferEngine> e = engine();
  if (e == nullptr) return NotInitialized("transfer_sync");
  if (buffers.size() != peer_addresses.size() || buffers.size() != lengths.size()) {
    return kInvalidParams;
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    if (buffers[i] <= 0 || peer_addresses[i] <= 0 || lengths[i] <= 0) return kInvalidParams;
  }
  if (buffers.empty()) return 0;
  absl::StatusOr<SegmentId> segment = e->OpenSegment(target);
  if (!segment.ok()) return Fail(segment.status(), absl::StrCat("transfer_sync to ", target));
  std::vector<TransferRequest> requests;
  requests.reserve(buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    requests.push_back({opcode, AsPointer(buffers[i]), *segment,
                        static_cast<uint64_t>(peer_addresses[i]),
                        static_cast<uint64_t>(lengths[i])});
  }
  for (const absl::Status& s : e->Transfer(requests)) {
    if (!s.ok()) return Fail(s, absl::StrCat("transfer_sync to ", target));
  }
  return 0;
}

int PyTransferEngine::Probe(const std::string& target) {
  std::shared_ptr<TransferEngine> e = engine();
  if (e == nullptr) return NotInitialized("send_probe");
  absl::StatusOr<SegmentId> segment = e->OpenSegment(target);
  return segment.ok() ? 0 : Fail(segment.status(), absl::StrCat("send_probe to ", target));
}

int64_t PyTransferEngine::AllocateManagedBuffer(int64_t length) {
  std::shared_ptr<TransferEngine> e = engine();
  if (e == nullptr || length <= 0) return 0;
  absl::StatusOr<void*> mem = e->AllocateSharedMemory(static_cast<uint64_t>(length));
  if (!mem.ok()) {
    Fail(mem.status(), "allocate_managed_buffer");
    return 0;
  }
  const int64_t addr = static_cast<int64_t>(reinterpret_cast<uintptr_t>(*mem));
  absl::MutexLock lock(&mu_);
  managed_[addr] = length;
  return addr;
}

int PyTransferEngine::FreeManagedBuffer(int64_t ptr) {
  std::shared_ptr<TransferEngine> e = engine();
  if (e == nullptr) return NotInitialized("free_managed_buffer");
  {
    absl::MutexLock lock(&mu_);
    if (managed_.erase(ptr) == 0) return kInvalidParams;
  }
  absl::Status s = e->FreeSharedMemory(AsPointer(ptr));
  return s.ok() ? 0 : Fail(s, "free_managed_buffer");
}

bool PyTransferEngine::InManagedBuffer(int64_t ptr, int64_t length) const {
  if (length < 0) return false;
  absl::MutexLock lock(&mu_);
  auto it = managed_.upper_bound(ptr);
  if (it == managed_.begin()) return false;
  --it;
  return ptr >= it->first && ptr - it->first + length <= it->second;
}

int PyTransferEngine::WriteBytesToBuffer(int64_t ptr, const char* data, int64_t length) {
  if (!InManagedBuffer(ptr, length)) return kInvalidParams;
  std::memcpy(AsPointer(ptr), data, static_cast<size_t>(length));
  return 0;
}

void BindEngine(py::module_& m) {
  py::enum_<TransferRequest::Opcode>(m, "TransferOpcode")
      .value("Read", TransferRequest::Opcode::kRead)
      .value("Write", TransferRequest::Opcode::kWrite)
      .export_values();

  py::class_<EngineHandle>(m, "EngineHandle",
                           "An initialized transfer engine, from TransferEngine.get_engine(); pass "
                           "it to MooncakeDistributedStore.setup() to share the engine.")
      .def_property_readonly("segment_name",
                             [](const EngineHandle& h) { return h.engine->segment_name(); })
      .def("__repr__", [](const EngineHandle& h) {
        return absl::StrCat("<EngineHandle ", h.engine->segment_name(), ">");
      });

  using E = PyTransferEngine;
  using Op = TransferRequest::Opcode;
  py::class_<E>(m, "TransferEngine")
      .def(py::init<>())
      .def("initialize", &E::Initialize, py::arg("local_hostname"), py::arg("metadata_server"),
           py::arg("protocol"), py::arg("device_name"), py::call_guard<py::gil_scoped_release>(),
           "Starts the engine. local_hostname is 'host' or 'host:port'; metadata_server is "
           "'P2PHANDSHAKE', 'http://host:port/metadata' or 'etcd://host:port'. 0 = ok.")
      .def(
          "initialize_ext",
          [](E& self, const std::string& host, const std::string& metadata,
             const std::string& protocol, const std::string& devices,
             const std::string&) { return self.Initialize(host, metadata, protocol, devices); },
          py::arg("local_hostname"), py::arg("metadata_server"), py::arg("protocol"),
          py::arg("device_name"), py::arg("metadata_type"),
          py::call_guard<py::gil_scoped_release>(),
          "initialize() with Mooncake's metadata_type argument (implied by metadata_server).")
      .def("get_rpc_port", &E::RpcPort)
      .def("get_local_segment_name", &E::SegmentName)
      .def("get_engine",
           [](const E& self) -> py::object {
             std::shared_ptr<TransferEngine> e = self.engine();
             if (e == nullptr) return py::none();
             return py::cast(EngineHandle{std::move(e)});
           })
      .def("register_memory", &E::RegisterMemory, py::arg("buffer_addr"), py::arg("capacity"),
           py::call_guard<py::gil_scoped_release>())
      .def("unregister_memory", &E::UnregisterMemory, py::arg("buffer_addr"),
           py::call_guard<py::gil_scoped_release>())
      .def("batch_register_memory", &E::BatchRegisterMemory, py::arg("buffer_addresses"),
           py::arg("capacities"), py::call_guard<py::gil_scoped_release>())
      .def("batch_unregister_memory", &E::BatchUnregisterMemory, py::arg("buffer_addresses"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "transfer_sync_write",
          [](E& self, const std::string& target, int64_t buffer, int64_t peer, int64_t length) {
            return self.TransferSync(target, Op::kWrite, {buffer}, {peer}, {length});
          },
          py::arg("target_hostname"), py::arg("buffer"), py::arg("peer_buffer_address"),
          py::arg("length"), py::call_guard<py::gil_scoped_release>())
      .def(
          "transfer_sync_read",
          [](E& self, const std::string& target, int64_t buffer, int64_t peer, int64_t length) {
            return self.TransferSync(target, Op::kRead, {buffer}, {peer}, {length});
          },
          py::arg("target_hostname"), py::arg("buffer"), py::arg("peer_buffer_address"),
          py::arg("length"), py::call_guard<py::gil_scoped_release>())
      .def(
          "transfer_sync",
          [](E& self, const std::string& target, int64_t buffer, int64_t peer, int64_t length,
             Op opcode) { return self.TransferSync(target, opcode, {buffer}, {peer}, {length}); },
          py::arg("target_hostname"), py::arg("buffer"), py::arg("peer_buffer_address"),
          py::arg("length"), py::arg("opcode"), py::call_guard<py::gil_scoped_release>())
      .def(
          "batch_transfer_sync_write",
          [](E& self, const std::string& target, const std::vector<int64_t>& buffers,
             const std::vector<int64_t>& peers, const std::vector<int64_t>& lengths) {
            return self.TransferSync(target, Op::kWrite, buffers, peers, lengths);
          },
          py::arg("target_hostname"), py::arg("buffers"), py::arg("peer_buffer_addresses"),
          py::arg("lengths"), py::call_guard<py::gil_scoped_release>())
      .def(
          "batch_transfer_sync_read",
          [](E& self, const std::string& target, const std::vector<int64_t>& buffers,
             const std::vector<int64_t>& peers, const std::vector<int64_t>& lengths) {
            return self.TransferSync(target, Op::kRead, buffers, peers, lengths);
          },
          py::arg("target_hostname"), py::arg("buffers"), py::arg("peer_buffer_addresses"),
          py::arg("lengths"), py::call_guard<py::gil_scoped_release>())
      .def(
          "send_probe", [](E& self, const std::string& target) { return self.Probe(target); },
          py::arg("peer_session_id"), py::call_guard<py::gil_scoped_release>(),
          "0 if the peer segment ('host:port') can be opened (its descriptor fetched), else a "
          "negative code.")
      .def("allocate_managed_buffer", &E::AllocateManagedBuffer, py::arg("length"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "free_managed_buffer",
          [](E& self, int64_t ptr, int64_t /*length*/) { return self.FreeManagedBuffer(ptr); },
          py::arg("buffer_addr"), py::arg("length"), py::call_guard<py::gil_scoped_release>())
      .def(
          "write_bytes_to_buffer",
          [](E& self, int64_t ptr, py::bytes data, int64_t length) {
            char* bytes = nullptr;
            Py_ssize_t size = 0;
            PyBytes_AsStringAndSize(data.ptr(), &bytes, &size);
            if (length < 0 || length > size) return kInvalidParams;
            py::gil_scoped_release release;
            return self.WriteBytesToBuffer(ptr, bytes, length);
          },
          py::arg("dest_address"), py::arg("src_ptr"), py::arg("length"))
      .def(
          "read_bytes_from_buffer",
          [](E& self, int64_t ptr, int64_t length) {
            if (!self.InManagedBuffer(ptr, length)) return py::bytes();
            return py::bytes(static_cast<const char*>(reinterpret_cast<void*>(ptr)),
                             static_cast<size_t>(length));
          },
          py::arg("source_address"), py::arg("length"));
}

}  // namespace binding
}  // namespace mooncake
