// VerbsLab: the two-host setting the verbs conformance suite (verbs_conformance_test.cc) runs in,
// over either implementation of the Verbs seam:
//   SimLab  two simulated hosts in one process (SimVerbs)
//   RxeLab  two qemu guests with soft-RoCE (IbVerbs, libibverbs on rdma_rxe; tools/roce_vm): this
//           process is the requester in one guest, RunResponder serves the other guest
// The requester side is local: the test opens its devices through `verbs()` and posts work
// requests itself. The responder side is remote, reached through Responder: it registers memory,
// brings QPs up against the requester's, reads its memory back, and kills QPs (a dead peer).
//
//   std::unique_ptr<VerbsLab> lab = NewSimLab();        // or NewRxeLab("10.0.0.1", 7471)
//   ibv_context* ctx = *lab->verbs()->OpenDevice(lab->device(0));
//   auto mr = lab->responder()->RegisterMemory(/*rail=*/0, 1 << 20, access);
//   ...  lab->WaitForCompletions(cq, 1, absl::Seconds(5));
#ifndef SIM_VERBS_VERBS_LAB_H_
#define SIM_VERBS_VERBS_LAB_H_

#include <infiniband/verbs.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mooncake/transfer/rdma/verbs.h"

namespace sim {

// The responder's side of one RC connection, as the requester learns it.
struct RemoteQp {
  uint32_t qpn = 0;
  uint32_t psn = 0;
  ibv_gid gid{};
};

struct RemoteMr {
  int id = 0;
  uint64_t addr = 0;
  uint32_t rkey = 0;
  uint64_t length = 0;
};

// What the requester sends to bring up a responder QP.
struct QpRequest {
  int rail = 0;
  uint32_t qpn = 0;
  uint32_t psn = 0;
  ibv_gid gid{};
  ibv_mtu mtu = IBV_MTU_1024;
  int gid_index = 0;
};

class Responder {
 public:
  virtual ~Responder() = default;
  // RegisterMemory allocates `length` bytes on `rail`'s device, fills byte i with
  // (i * 13 + 7) & 0xff, and registers them with `access`.
  virtual absl::StatusOr<RemoteMr> RegisterMemory(int rail, uint64_t length, int access) = 0;
  // Connect creates a QP on the rail's device and brings it to RTS aimed at the requester's QP.
  virtual absl::StatusOr<RemoteQp> Connect(const QpRequest& request) = 0;
  // Read returns bytes of a registered region.
  virtual absl::StatusOr<std::string> Read(int mr, uint64_t offset, uint64_t length) = 0;
  // KillQp destroys a responder QP: the requester then talks to nobody.
  virtual absl::Status KillQp(uint32_t qpn) = 0;
};

class VerbsLab {
 public:
  virtual ~VerbsLab() = default;
  virtual const char* name() const = 0;
  // The requester's Verbs and its rail devices ("erdma_0", "erdma_1").
  virtual mooncake::Verbs* verbs() = 0;
  virtual std::string device(int rail) const = 0;
  virtual Responder* responder() = 0;
  // WaitForCompletions polls `cq` until `count` completions came or `timeout` passed (simulated
  // time in the SimLab, wall time on rxe), letting the world make progress meanwhile.
  virtual std::vector<ibv_wc> WaitForCompletions(ibv_cq* cq, size_t count,
                                                 absl::Duration timeout) = 0;
  // SetLinkUp takes the link under the requester's own `rail` device down or brings it back, and
  // returns once the port reports it (on rxe: `ip link set` on the rail's netdev; when up, also
  // waits for the IPv4 GID to be back).
  virtual absl::Status SetLinkUp(int rail, bool up) = 0;
};

std::unique_ptr<VerbsLab> NewSimLab();
// NewRxeLab connects to a responder that RunResponder serves at host:port.
absl::StatusOr<std::unique_ptr<VerbsLab>> NewRxeLab(const std::string& host, int port);
// RunResponder serves the responder side on real verbs, one requester connection after another,
// until ShutdownResponder.
int RunResponder(int port);
absl::Status ShutdownResponder(const std::string& host, int port);

// Fill is the byte pattern Responder::RegisterMemory writes.
inline char ResponderByte(uint64_t i) { return static_cast<char>((i * 13 + 7) & 0xff); }

}  // namespace sim

#endif  // SIM_VERBS_VERBS_LAB_H_
