// MooncakeDistributedStore's copying value calls (put_parts, put_batch, get_batch, get_buffer,
// batch_get_buffer), the upsert family, replica descriptors and health_check: the calls vLLM's
// and LMCache's connectors make besides SGLang's (docs/compatibility.md section 3).
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/standalone/host_mem_allocator.h"
#include "pybind11/stl.h"
#include "sglang_backend/py_store.h"
#include "sglang_backend/py_store_internal.h"

namespace py = pybind11;

namespace mooncake {
namespace binding {
namespace {

// Values of this size and more live in HostMemAllocator blocks, which a storage process maps and
// fills in place; smaller ones in heap memory, which standalone mode copies through its staging
// block (cheaper than sharing a new memfd per call).
constexpr uint64_t kSharedValueBytes = uint64_t{4} << 20;

// How long an upsert waits for readers' leases on the old object to end: longer than one default
// read lease (--default_kv_lease_ttl, 10 s), so a key read once can always be upserted.
constexpr absl::Duration kUpsertLeaseWait = absl::Seconds(12);

HostMemAllocator& ValueAllocator() {
  static auto* allocator = new HostMemAllocator();
  return *allocator;
}

// Registered registers `buffer` for the client's transfers while it lives, if the client needs
// that (embedded mode).
class Registered {
 public:
  Registered(StoreApi* client, HostBuffer* buffer) : client_(client), buffer_(buffer) {
    if (!client_->requires_registration()) return;
    status_ = client_->RegisterBuffer(buffer_->data(), buffer_->capacity());
    registered_ = status_.ok();
  }
  ~Registered() {
    if (registered_) client_->UnregisterBuffer(buffer_->data()).IgnoreError();
  }
  Registered(const Registered&) = delete;
  Registered& operator=(const Registered&) = delete;
  const absl::Status& status() const { return status_; }

 private:
  StoreApi* client_;
  HostBuffer* buffer_;
  absl::Status status_;
  bool registered_ = false;
};

int Code(ErrorCode e) { return static_cast<int>(e); }

}  // namespace

HostBuffer::HostBuffer(uint64_t size) {
  const uint64_t n = std::max<uint64_t>(size, 1);
  if (n >= kSharedValueBytes) {
    absl::StatusOr<void*> p = ValueAllocator().Alloc(n);
    if (!p.ok()) {
      MC_LOG(ERROR) << "value buffer of " << n << " bytes: " << p.status().message();
      return;
    }
    base_ = static_cast<char*>(*p);
    shared_ = true;
  } else {
    base_ = new (std::nothrow) char[n];
    if (base_ == nullptr) return;
  }
  capacity_ = n;
}

HostBuffer::~HostBuffer() {
  if (base_ == nullptr) return;
  if (shared_) {
    ValueAllocator().Free(base_).IgnoreError();
  } else {
    delete[] base_;
  }
}

std::vector<int> PyStore::ClearForUpsert(StoreApi* c, const std::vector<std::string>& keys) {
  std::vector<int> out(keys.size(), 0);
  std::vector<size_t> pending;
  for (size_t i = 0; i < keys.size(); ++i) pending.push_back(i);
  const absl::Time deadline = absl::Now() + kUpsertLeaseWait;
  while (!pending.empty()) {
    std::vector<std::string> batch;
    for (size_t i : pending) batch.push_back(keys[i]);
    const std::vector<int> rc = c->BatchRemove(batch, /*force=*/false);
    std::vector<size_t> again;
    for (size_t j = 0; j < pending.size(); ++j) {
      const int r = j < rc.size() ? rc[j] : Code(ErrorCode::INTERNAL_ERROR);
      const bool busy =
          r == Code(ErrorCode::OBJECT_HAS_LEASE) || r == Code(ErrorCode::REPLICA_IS_NOT_READY);
      if (busy && absl::Now() < deadline) {
        again.push_back(pending[j]);
      } else {
        out[pending[j]] = (r == Code(ErrorCode::OBJECT_NOT_FOUND)) ? 0 : std::min(r, 0);
      }
    }
    pending = std::move(again);
    if (!pending.empty()) absl::SleepFor(absl::Milliseconds(20));
  }
  return out;
}

std::vector<int> PyStore::Upsert(StoreApi* c, const std::vector<std::string>& keys,
                                 const std::vector<std::vector<BufferRef>>& buffers,
                                 const ReplicateConfig& config) {
  std::vector<int> out = ClearForUpsert(c, keys);
  std::vector<std::string> put_keys;
  std::vector<std::vector<BufferRef>> put_buffers;
  std::vector<size_t> index;
  for (size_t j = 0; j < keys.size(); ++j) {
    if (out[j] != 0) continue;  // could not clear: that code stands
    put_keys.push_back(keys[j]);
    put_buffers.push_back(buffers[j]);
    index.push_back(j);
  }
  if (put_keys.empty()) return out;
  const std::vector<int> rc = c->BatchPut(put_keys, put_buffers, config);
  for (size_t j = 0; j < index.size(); ++j) {
    out[index[j]] = j < rc.size() ? rc[j] : Code(ErrorCode::INTERNAL_ERROR);
  }
  return out;
}

std::vector<int> PyStore::PutValues(const std::vector<std::string>& keys,
                                    const std::vector<std::vector<absl::string_view>>& values,
                                    const ReplicateConfig& config, bool upsert) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, upsert ? "upsert" : "put");
  std::vector<int> out(keys.size(), c == nullptr ? kNotSetUp : kInvalidParams);
  if (c == nullptr || keys.size() != values.size()) return out;
  if (!ValidReplicaNum(config, upsert ? "upsert" : "put")) return out;
  std::vector<size_t> index;
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    uint64_t size = 0;
    for (absl::string_view part : values[i]) size += part.size();
    if (keys[i].empty()) {
      out[i] = Code(ErrorCode::INVALID_KEY);
      continue;
    }
    if (size == 0) continue;  // an empty object: INVALID_PARAMS, as Mooncake
    index.push_back(i);
    sizes.push_back(size);
    total += size;
  }
  if (index.empty()) return out;
  HostBuffer buffer(total);
  if (!buffer.ok()) {
    for (size_t i : index) out[i] = Code(ErrorCode::NO_AVAILABLE_HANDLE);
    return out;
  }
  std::vector<std::string> put_keys;
  std::vector<std::vector<BufferRef>> refs;
  std::vector<size_t> put_index;
  uint64_t offset = 0;
  for (size_t j = 0; j < index.size(); ++j) {
    char* start = buffer.data() + offset;
    for (absl::string_view part : values[index[j]]) {
      std::copy(part.begin(), part.end(), buffer.data() + offset);
      offset += part.size();
    }
    put_keys.push_back(keys[index[j]]);
    refs.push_back({{start, sizes[j]}});
    put_index.push_back(index[j]);
  }
  Registered registered(c, &buffer);
  if (!registered.status().ok()) {
    MC_LOG(ERROR) << "MooncakeDistributedStore.put: " << registered.status().message();
    for (size_t i : put_index) out[i] = ToPythonCode(registered.status());
    return out;
  }
  const std::vector<int> rc =
      upsert ? Upsert(c, put_keys, refs, config) : c->BatchPut(put_keys, refs, config);
  for (size_t j = 0; j < put_index.size(); ++j) {
    out[put_index[j]] = j < rc.size() ? rc[j] : Code(ErrorCode::INTERNAL_ERROR);
  }
  return out;
}

std::vector<BufferSlice> PyStore::GetValues(const std::vector<std::string>& keys) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "get_buffer");
  std::vector<BufferSlice> out(keys.size());
  if (c == nullptr) {
    for (BufferSlice& s : out) s.code = kNotSetUp;
    return out;
  }
  // One round trip for the sizes (and a lease), one for the bytes.
  const std::vector<ObjectReplicas> found = c->BatchGetReplicas(keys);
  std::vector<size_t> index;
  uint64_t total = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const ErrorCode e = i < found.size() ? found[i].error : ErrorCode::INTERNAL_ERROR;
    if (e != ErrorCode::OK) {
      out[i].code = Code(e);
      continue;
    }
    out[i].offset = total;
    out[i].size = found[i].size;
    total += found[i].size;
    index.push_back(i);
  }
  if (index.empty()) return out;
  auto buffer = std::make_shared<HostBuffer>(total);
  if (!buffer->ok()) {
    for (size_t i : index) out[i].code = Code(ErrorCode::NO_AVAILABLE_HANDLE);
    return out;
  }
  std::vector<std::string> get_keys;
  std::vector<std::vector<BufferRef>> refs;
  for (size_t i : index) {
    get_keys.push_back(keys[i]);
    refs.push_back({{buffer->data() + out[i].offset, out[i].size}});
  }
  std::vector<int64_t> rc;
  {
    Registered registered(c, buffer.get());
    if (!registered.status().ok()) {
      for (size_t i : index) out[i].code = ToPythonCode(registered.status());
      return out;
    }
    rc = c->BatchGet(get_keys, refs);
  }
  for (size_t j = 0; j < index.size(); ++j) {
    BufferSlice& s = out[index[j]];
    const int64_t r = j < rc.size() ? rc[j] : Code(ErrorCode::INTERNAL_ERROR);
    if (r < 0) {
      s.code = r;
      continue;
    }
    s.size = static_cast<uint64_t>(r);
    s.buffer = buffer;
  }
  return out;
}

std::vector<int> PyStore::BatchUpsertFrom(const std::vector<std::string>& keys,
                                          const std::vector<std::vector<PyBuffer>>& buffers,
                                          const ReplicateConfig& config) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "batch_upsert_from");
  if (c == nullptr) return std::vector<int>(keys.size(), kNotSetUp);
  if (!ValidReplicaNum(config, "batch_upsert_from")) {
    return std::vector<int>(keys.size(), kInvalidParams);
  }
  return ForValidKeys<int>(keys, buffers,
                           [&](const auto& k, const auto& b) { return Upsert(c, k, b, config); });
}

std::vector<ObjectReplicas> PyStore::BatchGetReplicas(const std::vector<std::string>& keys) {
  std::shared_lock<std::shared_mutex> lock;
  StoreApi* c = Client(&lock, "batch_get_replica_desc");
  if (c == nullptr) {
    std::vector<ObjectReplicas> out(keys.size());
    for (ObjectReplicas& o : out) o.error = ErrorCode::INTERNAL_ERROR;
    return out;
  }
  return c->BatchGetReplicas(keys);
}

int PyStore::HealthCheck() {
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (client_ == nullptr) return static_cast<int>(StoreHealth::kNotSetUp);
  return static_cast<int>(client_->HealthCheck());
}

// ---------------------------------------------------------------------------------------------
// Python classes.

namespace {

// Mooncake's replica states; the master lists only complete replicas.
enum class PyReplicaStatus { kUndefined, kInitialized, kProcessing, kComplete, kRemoved, kFailed };

// mooncake.store.ReplicaDescriptor and its parts, as Mooncake names them.
struct PyMemoryBuffer {  // `Descriptor`
  uint64_t size = 0;
  uint64_t buffer_address = 0;
  std::string transport_endpoint;  // the segment (storage process) holding the copy
};
struct PyMemoryDescriptor {
  PyMemoryBuffer buffer_descriptor;
};
struct PyDiskDescriptor {
  std::string file_path;  // our tier's copies live in bucket files of the holder: its name
  uint64_t object_size = 0;
};
struct PyReplicaDescriptor {
  ReplicaDesc replica;
  PyReplicaStatus status = PyReplicaStatus::kComplete;
};

std::vector<PyReplicaDescriptor> Descriptors(const ObjectReplicas& o) {
  std::vector<PyReplicaDescriptor> out;
  if (o.error != ErrorCode::OK) return out;
  for (const ReplicaDesc& r : o.replicas) out.push_back({r, PyReplicaStatus::kComplete});
  return out;
}

// GetSlices reads `keys` with the GIL released.
std::vector<BufferSlice> GetSlices(PyStore& self, const std::vector<std::string>& keys) {
  py::gil_scoped_release release;
  return self.GetValues(keys);
}

py::object Handle(const BufferSlice& s) {
  if (s.buffer == nullptr) return py::none();
  return py::cast(s);
}

// Parts from Python: each a bytes-like object (kept alive and viewed while `views` lives).
std::vector<absl::string_view> Parts(const py::args& parts,
                                     std::vector<std::unique_ptr<BytesView>>* views) {
  std::vector<absl::string_view> out;
  for (py::handle part : parts) {
    views->push_back(std::make_unique<BytesView>(part));
    out.push_back(views->back()->data());
  }
  return out;
}

// The optional config keyword of the *parts calls (they take the parts as *args).
ReplicateConfig PartsConfig(const py::kwargs& kwargs, const char* method) {
  py::object config = py::none();
  for (auto item : kwargs) {
    const std::string name = py::str(item.first);
    if (name != "config") {
      throw py::type_error(
          absl::StrCat(method, "() got an unexpected keyword argument '", name, "'"));
    }
    config = py::reinterpret_borrow<py::object>(item.second);
  }
  return ConfigArg(config);
}

int FirstError(const std::vector<int>& codes) {
  for (int c : codes) {
    if (c != 0) return c;
  }
  return 0;
}

// put_batch / upsert_batch: one int, 0 when every key was stored, else the first key's error.
int PutBatch(PyStore& self, const std::vector<std::string>& keys, const py::list& values,
             const py::object& config, bool upsert) {
  ReplicateConfig c = ConfigArg(config);
  if (keys.size() != values.size()) return kInvalidParams;
  std::vector<std::unique_ptr<BytesView>> views;
  std::vector<std::vector<absl::string_view>> parts;
  for (py::handle v : values) {
    views.push_back(std::make_unique<BytesView>(v));
    parts.push_back({views.back()->data()});
  }
  py::gil_scoped_release release;
  return FirstError(self.PutValues(keys, parts, c, upsert));
}

int PutParts(PyStore& self, const std::string& key, const py::args& args, const py::kwargs& kwargs,
             bool upsert) {
  ReplicateConfig c = PartsConfig(kwargs, upsert ? "upsert_parts" : "put_parts");
  std::vector<std::unique_ptr<BytesView>> views;
  std::vector<absl::string_view> parts = Parts(args, &views);
  py::gil_scoped_release release;
  return self.PutValues({key}, {parts}, c, upsert)[0];
}

}  // namespace

void BindStoreValues(py::module_& m, py::class_<PyStore>& store) {
  py::class_<BufferSlice>(m, "BufferHandle", py::buffer_protocol(),
                          "An object's bytes, read by get_buffer / batch_get_buffer; supports the "
                          "buffer protocol (memoryview(handle), bytes(handle)).")
      .def("ptr", [](const BufferSlice& s) { return reinterpret_cast<uintptr_t>(s.data()); })
      .def("size", [](const BufferSlice& s) { return s.size; })
      .def("__len__", [](const BufferSlice& s) { return s.size; })
      .def_buffer([](BufferSlice& s) {
        return py::buffer_info(const_cast<char*>(s.data()), 1, "B", 1,
                               {static_cast<py::ssize_t>(s.size)}, {1}, /*readonly=*/false);
      });

  py::enum_<PyReplicaStatus>(m, "ReplicaStatus")
      .value("UNDEFINED", PyReplicaStatus::kUndefined)
      .value("INITIALIZED", PyReplicaStatus::kInitialized)
      .value("PROCESSING", PyReplicaStatus::kProcessing)
      .value("COMPLETE", PyReplicaStatus::kComplete)
      .value("REMOVED", PyReplicaStatus::kRemoved)
      .value("FAILED", PyReplicaStatus::kFailed);

  py::class_<PyMemoryBuffer>(m, "Descriptor")
      .def_readonly("size", &PyMemoryBuffer::size)
      .def_readonly("buffer_address", &PyMemoryBuffer::buffer_address)
      .def_readonly("transport_endpoint", &PyMemoryBuffer::transport_endpoint);
  py::class_<PyMemoryDescriptor>(m, "MemoryDescriptor")
      .def_readonly("buffer_descriptor", &PyMemoryDescriptor::buffer_descriptor);
  py::class_<PyDiskDescriptor>(m, "DiskDescriptor")
      .def_readonly("file_path", &PyDiskDescriptor::file_path)
      .def_readonly("object_size", &PyDiskDescriptor::object_size);
  py::class_<PyReplicaDescriptor>(m, "ReplicaDescriptor")
      .def_readonly("status", &PyReplicaDescriptor::status)
      .def("is_memory_replica", [](const PyReplicaDescriptor& d) { return !d.replica.disk; })
      .def("is_disk_replica", [](const PyReplicaDescriptor& d) { return d.replica.disk; })
      // Our SSD tier is the holder's local disk, so its copies are local-disk replicas too.
      .def("is_local_disk_replica", [](const PyReplicaDescriptor& d) { return d.replica.disk; })
      .def("is_nof_replica", [](const PyReplicaDescriptor&) { return false; })
      .def("get_memory_descriptor",
           [](const PyReplicaDescriptor& d) -> py::object {
             if (d.replica.disk) {
               throw py::value_error("get_memory_descriptor: this is a disk replica");
             }
             return py::cast(
                 PyMemoryDescriptor{{d.replica.size, d.replica.address, d.replica.segment_name}});
           })
      .def("get_disk_descriptor",
           [](const PyReplicaDescriptor& d) -> py::object {
             if (!d.replica.disk) {
               throw py::value_error("get_disk_descriptor: this is a memory replica");
             }
             return py::cast(PyDiskDescriptor{d.replica.segment_name, d.replica.size});
           })
      .def("__repr__", [](const PyReplicaDescriptor& d) {
        return absl::StrCat("ReplicaDescriptor(", d.replica.disk ? "disk" : "memory", ", ",
                            d.replica.segment_name, ", size=", d.replica.size, ")");
      });

  using S = PyStore;
  using Release = py::call_guard<py::gil_scoped_release>;
  store
      .def(
          "put_parts",
          [](S& self, const std::string& key, py::args parts, py::kwargs kwargs) {
            return PutParts(self, key, parts, kwargs, /*upsert=*/false);
          },
          py::arg("key"),
          "put_parts(key, *parts, config=None) -> int: the object is the parts concatenated.")
      .def(
          "upsert_parts",
          [](S& self, const std::string& key, py::args parts, py::kwargs kwargs) {
            return PutParts(self, key, parts, kwargs, /*upsert=*/true);
          },
          py::arg("key"))
      .def(
          "put_batch",
          [](S& self, const std::vector<std::string>& keys, const py::list& values,
             py::object config) { return PutBatch(self, keys, values, config, false); },
          py::arg("keys"), py::arg("values"), py::arg("config") = py::none(),
          "0 when every key was stored, else the first failing key's code.")
      .def(
          "upsert_batch",
          [](S& self, const std::vector<std::string>& keys, const py::list& values,
             py::object config) { return PutBatch(self, keys, values, config, true); },
          py::arg("keys"), py::arg("values"), py::arg("config") = py::none())
      .def(
          "upsert",
          [](S& self, const std::string& key, py::handle value, py::object config) {
            ReplicateConfig c = ConfigArg(config);
            BytesView view(value);
            py::gil_scoped_release release;
            return self.PutValues({key}, {{view.data()}}, c, /*upsert=*/true)[0];
          },
          py::arg("key"), py::arg("value"), py::arg("config") = py::none())
      .def(
          "upsert_from",
          [](S& self, const std::string& key, int64_t ptr, int64_t size, py::object config) {
            ReplicateConfig c = ConfigArg(config);
            py::gil_scoped_release release;
            return self.BatchUpsertFrom({key}, {{{ptr, size}}}, c)[0];
          },
          py::arg("key"), py::arg("buffer_ptr"), py::arg("size"), py::arg("config") = py::none())
      .def(
          "batch_upsert_from",
          [](S& self, const std::vector<std::string>& keys, const std::vector<int64_t>& ptrs,
             const std::vector<int64_t>& sizes, py::object config) {
            ReplicateConfig c = ConfigArg(config);
            py::gil_scoped_release release;
            return self.BatchUpsertFrom(keys, SingleBuffers(keys.size(), ptrs, sizes), c);
          },
          py::arg("keys"), py::arg("buffer_ptrs"), py::arg("sizes"), py::arg("config") = py::none())
      .def(
          "get_batch",
          [](S& self, const std::vector<std::string>& keys) {
            py::list out;
            for (const BufferSlice& s : GetSlices(self, keys)) {
              out.append(s.buffer == nullptr ? py::bytes("")
                                             : py::bytes(s.data(), static_cast<size_t>(s.size)));
            }
            return out;
          },
          py::arg("keys"), "Per key its bytes, or b\"\" when it cannot be read.")
      .def(
          "get_buffer",
          [](S& self, const std::string& key) { return Handle(GetSlices(self, {key})[0]); },
          py::arg("key"), "A BufferHandle with the object's bytes, or None.")
      .def(
          "batch_get_buffer",
          [](S& self, const std::vector<std::string>& keys) {
            py::list out;
            for (const BufferSlice& s : GetSlices(self, keys)) out.append(Handle(s));
            return out;
          },
          py::arg("keys"), "Per key a BufferHandle, or None.")
      .def(
          "get_replica_desc",
          [](S& self, const std::string& key) {
            std::vector<ObjectReplicas> found;
            {
              py::gil_scoped_release release;
              found = self.BatchGetReplicas({key});
            }
            return Descriptors(found[0]);
          },
          py::arg("key"), "The object's replicas (memory first, then disk); [] when missing.")
      .def(
          "batch_get_replica_desc",
          [](S& self, const std::vector<std::string>& keys) {
            std::vector<ObjectReplicas> found;
            {
              py::gil_scoped_release release;
              found = self.BatchGetReplicas(keys);
            }
            py::dict out;
            for (size_t i = 0; i < keys.size() && i < found.size(); ++i) {
              if (found[i].error == ErrorCode::OK) out[py::str(keys[i])] = Descriptors(found[i]);
            }
            return out;
          },
          py::arg("keys"), "{key: [ReplicaDescriptor]} for the keys that exist.")
      .def("health_check", &S::HealthCheck, Release(),
           "0 healthy, 1 not set up, 2 master (or storage process) unreachable.");
}

}  // namespace binding
}  // namespace mooncake
