// TransferEngine's segment table entries, shared by transfer_engine.cc (submit) and
// segment_table.cc (resolution, refresh, maintenance).
#ifndef MOONCAKE_TRANSFER_TRANSFER_ENGINE_INTERNAL_H_
#define MOONCAKE_TRANSFER_TRANSFER_ENGINE_INTERNAL_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "mooncake/transfer/segment_descriptor.h"
#include "mooncake/transfer/transfer_engine.h"
#include "mooncake/transfer/transport.h"

namespace mooncake {

// SegmentView is what the engine knows of a peer at one point: its descriptor and the routes
// built from it, fastest first. Immutable; a refresh replaces it whole, so a request holds one
// consistent view from validation to submission.
struct TransferEngine::SegmentView {
  bool self = false;  // this engine's own segment (desc is null then)
  std::shared_ptr<const SegmentDescriptor> desc;
  std::vector<std::shared_ptr<Route>> routes;
  RouteKind kind = RouteKind::kTcp;  // the fastest route, what RouteTo reports
  // RouteFor is the first route that serves the (validated) range, or null.
  const Route* RouteFor(uint64_t remote, uint64_t length) const;
  std::shared_ptr<TcpPeer> tcp_peer() const;
};

struct TransferEngine::Segment {
  explicit Segment(std::string n) : name(std::move(n)) {}
  const std::string name;
  // Serializes this segment's refreshes (which may do I/O); nothing else waits for it.
  absl::Mutex refresh_mu;
  // Guards the fields below; never held across I/O.
  absl::Mutex mu;
  std::shared_ptr<const SegmentView> view ABSL_GUARDED_BY(mu);  // null until first resolved
  bool stale ABSL_GUARDED_BY(mu) = false;           // a connection to the peer failed: re-read it
  int64_t failed_until_ns ABSL_GUARDED_BY(mu) = 0;  // a failed refresh is not retried before
  absl::Status failure ABSL_GUARDED_BY(mu);
  std::atomic<int64_t> last_used_ns{0};
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_TRANSFER_ENGINE_INTERNAL_H_
