// Synchronous replication of the master's journal to standby masters (docs/ha.md).
//
// Leader side, ReplicationLog: the leader's MasterJournal. Every record goes to every standby
// link in order; WaitDurable(seq) returns once every link that counts (joining or in sync) has
// applied the records up to seq. A link that fails or lags blocks those waiters until the HA
// coordinator has removed it from the in-sync set in etcd and then calls RemoveLink: so an
// answer the leader gives a client never depends on a record that a master listed as in sync
// lacks.
//
// Standby side, ReplicationReceiver: accepts the leader's connection (after the coordinator's
// check of its Hello), applies the snapshot and records to a StandbyState and acknowledges every
// frame once applied.
#ifndef MOONCAKE_MASTER_HA_REPLICATION_H_
#define MOONCAKE_MASTER_HA_REPLICATION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mooncake/common/clock.h"
#include "mooncake/master/ha/proto_journal.h"
#include "mooncake/master/ha/standby_state.h"
#include "mooncake/master/master_journal.h"
#include "mooncake/master/master_service.h"
#include "mooncake/proto/ha.pb.h"

namespace mooncake::ha {

// The largest frame either side accepts.
inline constexpr uint32_t kMaxFrameBytes = 256u << 20;
// The largest first frame (the Hello) a standby reads from a peer it has not accepted yet.
inline constexpr uint32_t kMaxHelloBytes = 4096;

// Frame IO: a 4-byte little-endian length and the serialized message.
absl::Status WriteFrame(int fd, const google::protobuf::Message& message);
// ReadFrame refuses a frame over `max_bytes` and gives up at `deadline`.
absl::Status ReadFrame(int fd, google::protobuf::Message* message,
                       uint32_t max_bytes = kMaxFrameBytes,
                       absl::Time deadline = absl::InfiniteFuture());

enum class LinkState { kCatchingUp, kJoining, kInSync };

struct LinkStatus {
  std::string standby_id;
  LinkState state = LinkState::kCatchingUp;
  bool failed = false;  // its connection broke
  bool snapshot_acked = false;
  uint64_t acked = 0;  // last record it applied
  uint64_t snapshot_seq = 0;
  uint64_t join_seq = 0;  // tail when it started counting (kJoining)
  absl::Duration lag;     // how long its oldest unacknowledged record has waited
};

class ReplicationLog final : public ProtoJournal {
 public:
  explicit ReplicationLog(Clock* clock);
  ~ReplicationLog() override;

  // The sequence number of the last record appended.
  uint64_t tail() const { return tail_.load(std::memory_order_acquire); }

  // AddLink takes ownership of `fd`, a connection to standby `standby_id` that accepted `hello`,
  // sends it a snapshot of `service` and then every record after it. The link starts catching up.
  void AddLink(const std::string& standby_id, int fd, const proto::ha::Hello& hello,
               MasterService* service);
  // Join makes a caught-up link count for WaitDurable and returns the tail at that moment: once
  // it has acked that far, it holds every record any client was answered for.
  uint64_t Join(const std::string& standby_id);
  void MarkInSync(const std::string& standby_id);
  // RemoveLink closes a link and stops waiting for it.
  void RemoveLink(const std::string& standby_id);
  std::vector<LinkStatus> Links() const;

  // WaitDurable waits until every counting link applied `seq`. DEADLINE_EXCEEDED-like
  // RPC_TIMEOUT at `deadline`, UNAVAILABLE_IN_CURRENT_STATUS once closed.
  absl::Status WaitDurable(uint64_t seq, absl::Time deadline);

  // Close fails every waiter and removes every link (the leader steps down). Open again makes
  // it usable for a new term.
  void Close();
  void Open();

 private:
  struct Link;
  void Append(proto::ha::Op* op) override;
  void AppendLocked(proto::ha::Op* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLoop(Link* link, MasterSnapshot snapshot, proto::ha::Hello hello);
  void AckLoop(Link* link);
  void CloseLink(std::shared_ptr<Link> link);
  // Sends the link's pending records, if its snapshot went out already.
  void Flush(Link* link);

  Clock* const clock_;
  mutable absl::Mutex mu_;
  std::atomic<uint64_t> tail_{0};
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::shared_ptr<Link>> links_ ABSL_GUARDED_BY(mu_);
};

class ReplicationReceiver {
 public:
  // accept(hello) decides whether a stream comes from the leader this master follows.
  using AcceptFn = std::function<bool(const proto::ha::Hello&)>;

  ReplicationReceiver(Clock* clock, AcceptFn accept);
  ~ReplicationReceiver();

  // Listen binds host:port (0 = ephemeral) and starts accepting.
  absl::Status Listen(const std::string& host, int port);
  int port() const { return port_; }

  // What the receiver holds.
  struct Held {
    std::string leader_id;  // whose stream; empty if none
    int64_t term = 0;
    bool complete = false;  // the snapshot arrived whole, and every frame since applied
    uint64_t applied = 0;
  };
  Held held() const;

  // TakeState closes the current stream and returns its state (a standby taking over).
  MasterSnapshot TakeState();
  // Closes the current stream (the master leads, or follows someone else now).
  void Drop();
  void Stop();

 private:
  void AcceptLoop();
  void Serve(int fd, uint64_t generation);

  Clock* const clock_;
  const AcceptFn accept_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex mu_;
  StandbyState state_ ABSL_GUARDED_BY(mu_);
  Held held_ ABSL_GUARDED_BY(mu_);
  int stream_fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake::ha

#endif  // MOONCAKE_MASTER_HA_REPLICATION_H_
