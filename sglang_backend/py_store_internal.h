// Argument helpers shared by the MooncakeDistributedStore binding's files (py_store.cc,
// py_store_values.cc). Not part of any API.
#ifndef SGLANG_BACKEND_PY_STORE_INTERNAL_H_
#define SGLANG_BACKEND_PY_STORE_INTERNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "mooncake/common/error_code.h"
#include "mooncake/master/master_types.h"
#include "mooncake/store/store_core.h"
#include "pybind11/pybind11.h"
#include "sglang_backend/py_store.h"

namespace mooncake {
namespace binding {

constexpr int kInvalidParams = static_cast<int>(ErrorCode::INVALID_PARAMS);
// What every call returns before setup() succeeds and after close() (Mooncake's -1).
constexpr int kNotSetUp = static_cast<int>(ErrorCode::INTERNAL_ERROR);

inline void* AsPointer(int64_t value) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(value));
}

// ToBufferRefs converts one key's Python buffers; false if any is invalid (no buffer, a
// non-positive pointer or size), so the key gets INVALID_PARAMS without reaching the store.
bool ToBufferRefs(const std::vector<PyBuffer>& in, std::vector<BufferRef>* out);

// ForValidKeys runs `call` on the keys whose buffers are valid and scatters its results back;
// the others get INVALID_PARAMS.
template <typename R, typename Call>
std::vector<R> ForValidKeys(const std::vector<std::string>& keys,
                            const std::vector<std::vector<PyBuffer>>& buffers, Call call) {
  std::vector<R> out(keys.size(), kInvalidParams);
  if (keys.size() != buffers.size()) return out;
  std::vector<std::string> valid_keys;
  std::vector<std::vector<BufferRef>> valid_buffers;
  std::vector<size_t> index;
  std::vector<BufferRef> refs;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!ToBufferRefs(buffers[i], &refs)) continue;
    valid_keys.push_back(keys[i]);
    valid_buffers.push_back(refs);
    index.push_back(i);
  }
  if (valid_keys.empty()) return out;
  std::vector<R> results = call(valid_keys, valid_buffers);
  for (size_t j = 0; j < index.size() && j < results.size(); ++j) out[index[j]] = results[j];
  return out;
}

// ValidReplicaNum refuses a replica count outside 1..kMaxReplicaNum (logged): on the wire 0
// means "default", so the master would quietly store one replica.
bool ValidReplicaNum(const ReplicateConfig& config, absl::string_view method);

// ConfigArg reads the optional `config` argument (None or a ReplicateConfig; else TypeError).
ReplicateConfig ConfigArg(const pybind11::object& config);

// SingleBuffers makes one buffer per key from parallel pointer and size lists; lists of
// different lengths give no buffers at all, so every key is INVALID_PARAMS.
std::vector<std::vector<PyBuffer>> SingleBuffers(size_t keys, const std::vector<int64_t>& ptrs,
                                                 const std::vector<int64_t>& sizes);

// BytesView holds a contiguous read-only view of a bytes-like object (released with the GIL
// held).
class BytesView {
 public:
  explicit BytesView(pybind11::handle obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) {
      throw pybind11::error_already_set();
    }
  }
  ~BytesView() { PyBuffer_Release(&view_); }
  BytesView(const BytesView&) = delete;
  BytesView& operator=(const BytesView&) = delete;
  absl::string_view data() const {
    return absl::string_view(static_cast<const char*>(view_.buf), static_cast<size_t>(view_.len));
  }

 private:
  Py_buffer view_;
};

}  // namespace binding
}  // namespace mooncake

#endif  // SGLANG_BACKEND_PY_STORE_INTERNAL_H_
