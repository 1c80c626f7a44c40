// MasterChannel: the MasterClient seam made asynchronous, so the store's core never blocks on the
// master. A call is a function run against the master's MasterClient, then a reply:
//
//   channel->Call([&](MasterClient& m) { result = m.BatchExistKey(keys); },
//                 [&](absl::Status lost) { if (!lost.ok()) ...; else use(result); });
//
// Contract: `reply` runs exactly once. It gets OK after `rpc` ran and its answer came back, or the
// failure (RPC_TIMEOUT, RPC_FAIL) when the request or its answer was lost; `rpc` then ran at most
// once, so the master may or may not have acted on it. Implementations:
//   DirectMasterChannel  production: runs the call inline on a MasterClient (gRPC, with its own
//                        deadlines) and replies before Call returns
//   sim::SimMasterRpc    the simulator: latency, loss, partitions and master restarts as events
#ifndef MOONCAKE_STORE_MASTER_CHANNEL_H_
#define MOONCAKE_STORE_MASTER_CHANNEL_H_

#include <functional>

#include "absl/status/status.h"
#include "mooncake/master/master_client.h"

namespace mooncake {

class MasterChannel {
 public:
  virtual ~MasterChannel() = default;
  virtual void Call(std::function<void(MasterClient&)> rpc,
                    std::function<void(absl::Status)> reply) = 0;
};

class DirectMasterChannel final : public MasterChannel {
 public:
  // `master` must outlive the channel.
  explicit DirectMasterChannel(MasterClient* master) : master_(master) {}
  void Call(std::function<void(MasterClient&)> rpc,
            std::function<void(absl::Status)> reply) override {
    rpc(*master_);
    reply(absl::OkStatus());
  }

 private:
  MasterClient* const master_;
};

}  // namespace mooncake

#endif  // MOONCAKE_STORE_MASTER_CHANNEL_H_
