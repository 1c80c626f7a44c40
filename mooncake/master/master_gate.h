// MasterGate: what the RPC adapters (gRPC, fast RPC) ask before and after calling MasterService,
// so a standby master serves nothing and a leader answers a change only once it is durable
// (mooncake/master/ha, docs/ha.md). No gate (null) means a single master: everything is admitted
// and settled at once.
#ifndef MOONCAKE_MASTER_MASTER_GATE_H_
#define MOONCAKE_MASTER_MASTER_GATE_H_

#include "absl/status/status.h"

namespace mooncake {

class MasterGate {
 public:
  virtual ~MasterGate() = default;
  // Admit: OK if this master may serve a call now; otherwise the error to answer with
  // (UNAVAILABLE_IN_CURRENT_STATUS on a standby, naming the leader).
  virtual absl::Status Admit() = 0;
  // Settle: called after a call that may have changed durable state. OK once every change made so
  // far is durable; otherwise the error to answer with instead of the result.
  virtual absl::Status Settle() = 0;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_MASTER_GATE_H_
