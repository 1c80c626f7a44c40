#include "mooncake/master/ha/ha_coordinator.h"

#include <time.h>
#include <unistd.h>

#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/host_port.h"
#include "mooncake/net/socket_util.h"
#include "nlohmann/json.hpp"

namespace mooncake::ha {
namespace {

using json = nlohmann::json;

json ParseObject(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

// Both etcd connections (main loop, keepalives) use the short per-endpoint timeouts.
metadata::EtcdMetadataClientOptions EtcdOptions(const HaOptions& options) {
  metadata::EtcdMetadataClientOptions o;
  o.connect_timeout = options.etcd_timeout;
  o.io_timeout = options.etcd_timeout;
  return o;
}

std::string Str(const json& j, const char* field) {
  auto it = j.find(field);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

int64_t HaCoordinator::BootNanos() {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

absl::StatusOr<std::unique_ptr<HaCoordinator>> HaCoordinator::Start(const HaOptions& options,
                                                                    MasterService* service,
                                                                    ReplicationLog* log) {
  if (options.etcd_endpoints.empty()) {
    return MakeError(ErrorCode::INVALID_PARAMS, "--enable_ha needs --etcd_endpoints");
  }
  if (options.cluster_id.empty() || options.cluster_id.find('/') != std::string::npos) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("--cluster_id='", options.cluster_id,
                                                             "': must be non-empty, without '/'"));
  }
  if (options.lease_ttl_seconds < 1 || options.lease_ttl_seconds > 600) {
    return MakeError(ErrorCode::INVALID_PARAMS, "HA lease TTL must be 1..600 seconds");
  }
  auto etcd = EtcdHaClient::Create(options.etcd_endpoints, EtcdOptions(options));
  if (!etcd.ok()) return MakeError(ErrorCode::INVALID_PARAMS, etcd.status().message());
  std::unique_ptr<HaCoordinator> c(new HaCoordinator(options, service, log, *std::move(etcd)));
  if (absl::Status s = c->receiver_->Listen(options.bind_host, options.replication_port); !s.ok()) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("HA replication port: ", s.message()));
  }
  // The first lease must work: a wrong endpoint list is a start-up error, not a silent standby.
  int64_t granted = 0;
  auto lease = c->etcd_->LeaseGrant(options.lease_ttl_seconds, &granted);
  if (!lease.ok()) {
    return MakeError(ErrorCode::ETCD_OPERATION_ERROR,
                     absl::StrCat("cannot reach etcd for --enable_ha: ", lease.status().message()));
  }
  c->lease_ = *lease;
  c->lease_deadline_ns_ = BootNanos();  // nothing is served before a keepalive confirms it
  c->keepalive_ = std::thread(&HaCoordinator::KeepAliveLoop, c.get());
  c->main_ = std::thread(&HaCoordinator::MainLoop, c.get());
  return c;
}

HaCoordinator::HaCoordinator(const HaOptions& options, MasterService* service, ReplicationLog* log,
                             std::unique_ptr<EtcdHaClient> etcd)
    : options_(options),
      service_(service),
      log_(log),
      etcd_(std::move(etcd)),  // The endpoints parsed for `etcd` already: this Create cannot fail.
      keepalive_etcd_(*EtcdHaClient::Create(options.etcd_endpoints, EtcdOptions(options))) {
  std::random_device random;
  id_ = absl::StrCat(absl::Hex(uint64_t{random()} << 32 | random(), absl::kZeroPad16));
  receiver_ = std::make_unique<ReplicationReceiver>(
      RealClock::Get(), [this](const proto::ha::Hello& hello) { return AcceptStream(hello); });
  log_->Close();  // nothing is durable until we lead
}

HaCoordinator::~HaCoordinator() { Stop(); }

void HaCoordinator::Stop() {
  if (stop_.HasBeenNotified()) return;
  stop_.Notify();
  if (main_.joinable()) main_.join();
  if (keepalive_.joinable()) keepalive_.join();
  leading_ = false;
  log_->Close();
  receiver_->Stop();
  // Hand over at once rather than after a TTL: a clean stop releases the lease.
  if (lease_.load() != 0) (void)etcd_->LeaseRevoke(lease_.load());
}

std::string HaCoordinator::Key(const std::string& suffix) const {
  return absl::StrCat("mooncake-store/", options_.cluster_id, "/", suffix);
}

bool HaCoordinator::Serving() const {
  return leading_.load(std::memory_order_acquire) &&
         BootNanos() < lease_deadline_ns_.load(std::memory_order_acquire);
}

std::string HaCoordinator::LeaderAddress() const {
  absl::MutexLock lock(&mu_);
  return leader_address_;
}

bool HaCoordinator::AcceptStream(const proto::ha::Hello& hello) {
  // First: without the token, a peer that read the leader's id and term off /ha_status could
  // replace the leader's stream and feed this standby a state it would serve after a failover.
  if (!AuthTokenMatches(options_.auth_token, hello.auth_token())) {
    auth_refusals_.fetch_add(1);
    MC_LOG(WARNING) << "refused a replication stream without the right MC_AUTH_TOKEN";
    return false;
  }
  if (leading_.load()) return false;
  absl::MutexLock lock(&mu_);
  if (hello.leader_id() != leader_id_ || hello.term() != leader_term_ || hello.term() == 0) {
    return false;
  }
  own_state_ = false;  // what our service holds is obsolete from here on
  return true;
}

void HaCoordinator::KeepAliveLoop() {
  const int64_t ttl_ns = options_.lease_ttl_seconds * int64_t{1000000000};
  // Stop serving a quarter TTL (at least 300 ms) before etcd could expire the lease.
  const int64_t margin_ns = std::max<int64_t>(ttl_ns / 4, 300000000);
  const absl::Duration period = absl::Nanoseconds(ttl_ns / 5);
  while (!stop_.WaitForNotificationWithTimeout(period)) {
    const int64_t lease = lease_.load();
    if (lease == 0) continue;
    const int64_t sent = BootNanos();
    auto ttl = keepalive_etcd_->LeaseKeepAlive(lease);
    if (!ttl.ok()) {
      MC_LOG(WARNING) << "etcd keepalive failed: " << ttl.status();
      continue;
    }
    if (*ttl <= 0) {
      MC_LOG(WARNING) << "etcd lease " << lease << " expired";
      int64_t expected = lease;
      lease_.compare_exchange_strong(expected, 0);
      continue;
    }
    const int64_t deadline = sent + *ttl * int64_t{1000000000} - margin_ns;
    if (deadline > lease_deadline_ns_.load()) lease_deadline_ns_.store(deadline);
  }
}

void HaCoordinator::EnsureLease() {
  if (lease_.load() != 0) return;
  auto lease = etcd_->LeaseGrant(options_.lease_ttl_seconds);
  if (!lease.ok()) {
    MC_LOG(WARNING) << "etcd lease grant failed: " << lease.status();
    return;
  }
  lease_deadline_ns_ = BootNanos();
  lease_ = *lease;
}

void HaCoordinator::MainLoop() {
  bool registered = false;
  int64_t registered_lease = 0;
  do {
    if (leading_.load() && BootNanos() >= lease_deadline_ns_.load()) {
      StepDown("its etcd lease could not be renewed in time");
    }
    EnsureLease();
    const int64_t lease = lease_.load();
    if (lease == 0) continue;
    if (!registered || registered_lease != lease) {
      json member = {{"id", id_},
                     {"grpc", FormatHostPort(options_.advertise_host, options_.grpc_port)},
                     {"metrics", FormatHostPort(options_.advertise_host, options_.metrics_port)},
                     {"replication", FormatHostPort(options_.advertise_host, receiver_->port())}};
      registered = etcd_->Put(Key("ha/members/" + id_), member.dump(), lease).ok();
      registered_lease = lease;
      if (!registered) continue;
    }
    if (leading_.load()) {
      Lead();
    } else {
      FollowOrCampaign();
    }
  } while (!stop_.WaitForNotificationWithTimeout(options_.poll_interval));
}

void HaCoordinator::FollowOrCampaign() {
  auto view = etcd_->Get(Key("master_view"));
  if (!view.ok()) return;
  if (view->has_value()) {
    auto info = etcd_->Get(Key("ha/leader"));
    if (!info.ok()) return;
    const json leader = info->has_value() ? ParseObject((*info)->value) : json::object();
    absl::MutexLock lock(&mu_);
    leader_address_ = (*view)->value;
    leader_id_ = Str(leader, "id");
    leader_term_ = (*view)->create_revision;
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    leader_address_.clear();
    leader_id_.clear();
    leader_term_ = 0;
  }
  // Nobody leads; the lease we hold must be good for a while before we claim anything.
  if (BootNanos() >= lease_deadline_ns_.load()) return;
  auto insync = etcd_->Get(Key("ha/insync"));
  if (!insync.ok()) return;
  Campaign(*insync);
}

void HaCoordinator::Campaign(const absl::optional<EtcdKeyValue>& insync) {
  enum class Source { kOwn, kStream, kEmpty } source = Source::kOwn;
  const ReplicationReceiver::Held held = receiver_->held();
  if (insync.has_value()) {
    const json set = ParseObject(insync->value);
    const std::string last_leader = Str(set, "leader");
    bool listed = false;
    std::vector<std::string> members;
    if (auto it = set.find("members"); it != set.end() && it->is_array()) {
      for (const json& m : *it) {
        if (m.is_string()) members.push_back(m.get<std::string>());
      }
    }
    for (const std::string& m : members) listed |= m == id_;
    bool own_state, ever_led;
    {
      absl::MutexLock lock(&mu_);
      own_state = own_state_;
      ever_led = ever_led_;
    }
    if (listed && held.complete && held.leader_id == last_leader && !own_state) {
      source = Source::kStream;
    } else if (listed && own_state && ever_led && last_leader == id_) {
      source = Source::kOwn;
    } else {
      // Only if every master that holds the state is gone may we start over.
      auto alive = etcd_->GetPrefix(Key("ha/members/"));
      if (!alive.ok()) return;
      for (const EtcdKeyValue& kv : *alive) {
        const std::string id = Str(ParseObject(kv.value), "id");
        for (const std::string& m : members) {
          if (m == id && id != id_) return;  // it will take over; we wait
        }
      }
      source = Source::kEmpty;
    }
  }
  const std::string grpc = FormatHostPort(options_.advertise_host, options_.grpc_port);
  const json leader = {{"id", id_},
                       {"grpc", grpc},
                       {"metrics", FormatHostPort(options_.advertise_host, options_.metrics_port)}};
  const json set = {{"leader", id_}, {"members", json::array({id_})}};
  int64_t revision = 0;
  auto won = etcd_->Txn(
      {EtcdCompare::Absent(Key("master_view")),
       EtcdCompare::ModRevision(Key("ha/insync"), insync.has_value() ? insync->mod_revision : 0)},
      {{Key("master_view"), grpc, lease_.load()},
       {Key("ha/leader"), leader.dump(), lease_.load()},
       {Key("ha/insync"), set.dump(), 0}},
      &revision);
  if (!won.ok() || !*won) return;
  // We lead from here. Install the state first: nothing is served until leading_ is set.
  absl::Status restored;
  const char* from = "its own state";
  switch (source) {
    case Source::kStream:
      restored = service_->Restore(receiver_->TakeState());
      from = "the replicated state";
      break;
    case Source::kOwn:
      receiver_->Drop();
      restored = service_->Restore(service_->Snapshot());
      break;
    case Source::kEmpty:
      receiver_->Drop();
      restored = service_->Restore(MasterSnapshot());
      from = insync.has_value() ? "an EMPTY state: every in-sync master is gone" : "a new cluster";
      break;
  }
  if (!restored.ok()) MC_LOG(ERROR) << "HA takeover: " << restored;
  log_->Open();
  term_ = revision;
  {
    absl::MutexLock lock(&mu_);
    leader_address_ = grpc;
    leader_id_ = id_;
    leader_term_ = revision;
    own_state_ = true;
    ever_led_ = true;
    insync_ = {id_};
    ++failovers_;
    if (source == Source::kEmpty && insync.has_value()) ++empty_takeovers_;
    last_event_ = absl::StrCat("took over as leader (term ", revision, ") from ", from);
  }
  linked_.clear();
  next_member_scan_ns_ = 0;
  next_leader_check_ns_ = BootNanos() + 500000000;
  leading_.store(true, std::memory_order_release);
  MC_LOG(WARNING) << "master " << id_ << " is the leader (term " << revision << ") with " << from
                  << "; serving on " << grpc;
}

void HaCoordinator::StepDown(const std::string& why) {
  if (!leading_.exchange(false)) return;
  MC_LOG(WARNING) << "master " << id_ << " stops leading: " << why;
  log_->Close();
  linked_.clear();
  // The leadership keys hang on our lease: give it up, or a lease that keepalives can still
  // renew would keep master_view pointing at a master that no longer serves. A new lease (and
  // member key) follows in the main loop.
  if (const int64_t old = lease_.exchange(0); old != 0) (void)etcd_->LeaseRevoke(old);
  absl::MutexLock lock(&mu_);
  last_event_ = absl::StrCat("stepped down: ", why);
  leader_address_.clear();
  leader_id_.clear();
  leader_term_ = 0;
}

absl::StatusOr<bool> HaCoordinator::WriteInSync(const std::set<std::string>& members) {
  const json set = {{"leader", id_},
                    {"members", json(std::vector<std::string>(members.begin(), members.end()))}};
  return etcd_->Txn({EtcdCompare::CreateRevision(Key("master_view"), term_.load())},
                    {{Key("ha/insync"), set.dump(), 0}});
}

void HaCoordinator::Lead() {
  const int64_t now = BootNanos();
  if (now >= next_leader_check_ns_) {
    next_leader_check_ns_ = now + 500000000;
    auto view = etcd_->Get(Key("master_view"));
    if (view.ok() && (!view->has_value() || (*view)->create_revision != term_.load())) {
      StepDown("another master holds the leadership key");
      return;
    }
  }
  ManageLinks();
}

void HaCoordinator::ManageLinks() {
  const int64_t now = BootNanos();
  if (now >= next_member_scan_ns_) {
    next_member_scan_ns_ = now + 300000000;
    auto members = etcd_->GetPrefix(Key("ha/members/"));
    if (members.ok()) {
      for (const EtcdKeyValue& kv : *members) {
        const json m = ParseObject(kv.value);
        const std::string id = Str(m, "id");
        if (id.empty() || id == id_ || linked_.count(id) != 0) continue;
        auto address = ParseHostPort(Str(m, "replication"));
        if (!address.ok()) continue;
        auto fd = ConnectTcp(address->host, address->port, absl::Milliseconds(300));
        if (!fd.ok()) continue;
        proto::ha::Hello hello;
        hello.set_leader_id(id_);
        hello.set_term(term_.load());
        hello.set_auth_token(options_.auth_token);
        log_->AddLink(id, *fd, hello, service_);
        linked_.insert(id);
        MC_LOG(INFO) << "replicating to standby " << id << " at " << Str(m, "replication");
      }
    }
  }
  for (const LinkStatus& link : log_->Links()) {
    bool listed;
    {
      absl::MutexLock lock(&mu_);
      listed = insync_.count(link.standby_id) != 0;
    }
    if (link.failed || (link.state != LinkState::kCatchingUp && link.lag > options_.ack_timeout)) {
      if (listed) {
        std::set<std::string> next;
        {
          absl::MutexLock lock(&mu_);
          next = insync_;
        }
        next.erase(link.standby_id);
        auto ok = WriteInSync(next);
        if (!ok.ok()) return;  // etcd is unreachable: waiters keep waiting; retry next round
        if (!*ok) {
          StepDown("lost the leadership while dropping a standby");
          return;
        }
        absl::MutexLock lock(&mu_);
        insync_ = next;
        last_event_ = absl::StrCat("standby ", link.standby_id, " left the in-sync set");
      }
      MC_LOG(WARNING) << "standby " << link.standby_id
                      << (link.failed ? " disconnected" : " stopped confirming")
                      << "; it leaves the in-sync set";
      log_->RemoveLink(link.standby_id);
      linked_.erase(link.standby_id);
      continue;
    }
    if (link.state == LinkState::kCatchingUp && link.snapshot_acked &&
        link.acked >= link.snapshot_seq) {
      log_->Join(link.standby_id);
    } else if (link.state == LinkState::kJoining && link.acked >= link.join_seq) {
      std::set<std::string> next;
      {
        absl::MutexLock lock(&mu_);
        next = insync_;
      }
      next.insert(link.standby_id);
      auto ok = WriteInSync(next);
      if (!ok.ok()) continue;
      if (!*ok) {
        StepDown("lost the leadership while adding a standby");
        return;
      }
      log_->MarkInSync(link.standby_id);
      absl::MutexLock lock(&mu_);
      insync_ = next;
      last_event_ = absl::StrCat("standby ", link.standby_id, " joined the in-sync set");
      MC_LOG(INFO) << "standby " << link.standby_id << " is in sync";
    }
  }
}

std::string HaCoordinator::StatusJson() const {
  json out;
  out["id"] = id_;
  out["cluster_id"] = options_.cluster_id;
  out["role"] = RoleName();
  out["lease_id"] = lease_.load();
  const int64_t left = lease_deadline_ns_.load() - BootNanos();
  out["lease_valid_ms"] = left > 0 ? left / 1000000 : 0;
  out["replication_port"] = receiver_->port();
  out["journal_tail"] = log_->tail();
  {
    absl::MutexLock lock(&mu_);
    out["leader"] = {{"id", leader_id_}, {"grpc", leader_address_}, {"term", leader_term_}};
    out["in_sync"] = json(std::vector<std::string>(insync_.begin(), insync_.end()));
    out["last_event"] = last_event_;
    out["takeovers"] = failovers_;
    out["empty_takeovers"] = empty_takeovers_;
  }
  json standbys = json::array();
  for (const LinkStatus& link : log_->Links()) {
    const char* state = link.state == LinkState::kInSync    ? "in_sync"
                        : link.state == LinkState::kJoining ? "joining"
                                                            : "catching_up";
    standbys.push_back({{"id", link.standby_id},
                        {"state", link.failed ? "failed" : state},
                        {"acked", link.acked},
                        {"lag_ms", absl::ToInt64Milliseconds(link.lag)}});
  }
  out["standbys"] = standbys;
  const ReplicationReceiver::Held held = receiver_->held();
  out["following"] = {{"leader_id", held.leader_id},
                      {"term", held.term},
                      {"complete", held.complete},
                      {"applied", held.applied}};
  return out.dump();
}

}  // namespace mooncake::ha
