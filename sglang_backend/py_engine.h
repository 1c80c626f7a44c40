// PyTransferEngine: `mooncake.engine.TransferEngine`, a TransferEngine driven from Python (SGLang
// creates one per rank for PD disaggregation and, when it can, hands it to the store through
// `get_engine()` so both share one engine). EngineHandle is what `get_engine()` returns and what
// `MooncakeDistributedStore.setup(..., engine)` accepts; it shares ownership of the engine.
//
//   engine = TransferEngine()
//   engine.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "")   # 0 = ok
//   store.setup("127.0.0.1", "P2PHANDSHAKE", seg, buf, "tcp", "", master, engine.get_engine())
//
// Every method returns Mooncake's codes (0 / negative ErrorCode) and releases the GIL while it
// waits.
#ifndef SGLANG_BACKEND_PY_ENGINE_H_
#define SGLANG_BACKEND_PY_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "mooncake/transfer/transfer_engine.h"
#include "pybind11/pybind11.h"

namespace mooncake {
namespace binding {

// EngineHandle shares ownership of an initialized engine.
struct EngineHandle {
  std::shared_ptr<TransferEngine> engine;
};

class PyTransferEngine {
 public:
  PyTransferEngine() = default;
  ~PyTransferEngine();

  // Initialize creates the engine; a second call is INVALID_PARAMS. device_name is a comma list
  // of RDMA devices (ignored for tcp).
  int Initialize(const std::string& local_hostname, const std::string& metadata_server,
                 const std::string& protocol, const std::string& device_name);

  // The port peers reach this engine on (its segment is "host:port"); -1 before Initialize.
  int RpcPort() const;
  // The engine's segment name, "" before Initialize.
  std::string SegmentName() const;
  // nullptr before Initialize.
  std::shared_ptr<TransferEngine> engine() const;

  int RegisterMemory(int64_t ptr, int64_t length);
  int UnregisterMemory(int64_t ptr);
  int BatchRegisterMemory(const std::vector<int64_t>& ptrs, const std::vector<int64_t>& lengths);
  int BatchUnregisterMemory(const std::vector<int64_t>& ptrs);

  // TransferSync moves `lengths[i]` bytes between local `buffers[i]` (registered) and
  // `peer_addresses[i]` in segment `target` ("host:port"). 0, or the first request's negative
  // code.
  int TransferSync(const std::string& target, TransferRequest::Opcode opcode,
                   const std::vector<int64_t>& buffers, const std::vector<int64_t>& peer_addresses,
                   const std::vector<int64_t>& lengths);

  // Probe opens the peer's segment: 0 when reachable, else a negative code.
  int Probe(const std::string& target);

  // Managed buffers: engine-allocated, registered, shared-memory backed. Address or 0.
  int64_t AllocateManagedBuffer(int64_t length);
  int FreeManagedBuffer(int64_t ptr);
  // Copies into / out of a managed buffer; the range must lie inside one.
  int WriteBytesToBuffer(int64_t ptr, const char* data, int64_t length);
  bool InManagedBuffer(int64_t ptr, int64_t length) const;

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<TransferEngine> engine_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, int64_t> managed_ ABSL_GUARDED_BY(mu_);  // address -> length
};

// BindEngine adds TransferEngine, TransferOpcode and EngineHandle to `m`.
void BindEngine(pybind11::module_& m);

}  // namespace binding
}  // namespace mooncake

#endif  // SGLANG_BACKEND_PY_ENGINE_H_
