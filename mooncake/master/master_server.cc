#include "mooncake/master/master_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/fast_rpc.h"
#include "mooncake/master/grpc_master_service.h"
#include "mooncake/master/metrics_text.h"
#include "mooncake/metadata/http_metadata_server.h"
#include "mooncake/net/host_port.h"

namespace mooncake {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

bool IsNumericAddress(const std::string& address) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, address.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, address.c_str(), buf) == 1;
}

absl::Status CheckPort(const char* name, int port, bool allow_disabled) {
  if (port == -1 && allow_disabled) return absl::OkStatus();
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(name, " ", port, " is not a port (0..65535)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateMasterServerOptions(const MasterServerOptions& o) {
  if (!IsNumericAddress(o.bind_address)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bind_address '", o.bind_address, "' is not a numeric IPv4 or IPv6 address"));
  }
  if (!o.http_metadata_server_host.empty() && !IsNumericAddress(o.http_metadata_server_host)) {
    return absl::InvalidArgumentError(absl::StrCat("http_metadata_server_host '",
                                                   o.http_metadata_server_host,
                                                   "' is not a numeric IPv4 or IPv6 address"));
  }
  if (absl::Status s = CheckPort("port", o.port, false); !s.ok()) return s;
  if (absl::Status s = CheckPort("metrics_port", o.metrics_port, true); !s.ok()) return s;
  if (absl::Status s = CheckPort("http_metadata_server_port", o.http_metadata_server_port, false);
      !s.ok()) {
    return s;
  }
  if (o.rpc_thread_num < 1 || o.rpc_thread_num > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("rpc_thread_num ", o.rpc_thread_num, " must be in 1..1024"));
  }
  if (o.tick_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("tick_interval must be > 0");
  }
  return ValidateMasterServiceOptions(o.service);
}

// Gate (master_gate.h) of an HA master: only the leader serves, and it answers a change only
// once every in-sync standby has it and its lease still holds.
class MasterServer::Gate final : public MasterGate {
 public:
  explicit Gate(MasterServer* server) : server_(server) {}
  absl::Status Admit() override {
    ha::HaCoordinator* ha = server_->ha_ready_.load(std::memory_order_acquire);
    if (ha != nullptr && ha->Serving()) return absl::OkStatus();
    return NotLeader(ha);
  }
  absl::Status Settle() override {
    ha::HaCoordinator* ha = server_->ha_ready_.load(std::memory_order_acquire);
    absl::Status durable =
        server_->log_->WaitDurable(server_->log_->tail(), absl::Now() + absl::Seconds(5));
    if (!durable.ok()) return durable;
    // Fencing: a leader whose lease may have lapsed meanwhile must not answer.
    if (ha == nullptr || !ha->Serving()) return NotLeader(ha);
    return absl::OkStatus();
  }

 private:
  static absl::Status NotLeader(ha::HaCoordinator* ha) {
    const std::string leader = ha == nullptr ? "" : ha->LeaderAddress();
    return MakeError(ErrorCode::UNAVAILABLE_IN_CURRENT_STATUS,
                     absl::StrCat("this master is a standby; ",
                                  leader.empty() ? "no leader is known yet"
                                                 : absl::StrCat("the leader is ", leader)));
  }
  MasterServer* const server_;
};

namespace {
MasterServiceOptions ServiceOptions(const MasterServerOptions& options, Clock* clock,
                                    MasterJournal* journal) {
  MasterServiceOptions o = options.service;
  o.journal = journal;
  // A real master that was itself stopped (SIGSTOP, a frozen VM) does not expire its clients
  // for that gap. Tests on a manual clock jump time on purpose and keep this off.
  if (clock == RealClock::Get() && o.tick_stall_threshold == absl::ZeroDuration()) {
    o.tick_stall_threshold = std::max(absl::Seconds(1), 10 * options.tick_interval);
  }
  return o;
}
}  // namespace

MasterServer::MasterServer(const MasterServerOptions& options, Clock* clock)
    : options_(options),
      log_(options.enable_ha ? std::make_unique<ha::ReplicationLog>(clock) : nullptr),
      service_(std::make_unique<MasterService>(ServiceOptions(options, clock, log_.get()), clock)),
      gate_(options.enable_ha ? std::make_unique<Gate>(this) : nullptr),
      grpc_service_(
          std::make_unique<GrpcMasterService>(service_.get(), gate_.get(), options.auth_token)) {}

absl::StatusOr<std::unique_ptr<MasterServer>> MasterServer::Start(
    const MasterServerOptions& options, Clock* clock) {
  if (absl::Status s = ValidateMasterServerOptions(options); !s.ok()) return s;
  std::unique_ptr<MasterServer> server(new MasterServer(options, clock));
  absl::Status started = server->StartGrpc();
  if (started.ok()) started = server->StartMetadata();
  if (started.ok()) started = server->StartFastRpc();
  // After the servers whose counters /metrics reads (their pointers are then constant).
  if (started.ok()) started = server->StartMetrics();
  if (started.ok()) started = server->StartHa();
  if (!started.ok()) {
    server->Stop();
    return started;
  }
  server->tick_thread_ = std::thread([s = server.get()] {
    while (!s->stop_ticking_.WaitForNotificationWithTimeout(s->options_.tick_interval)) {
      // A standby's state is the leader's: it expires, discards and evicts nothing itself.
      if (s->ha_ == nullptr || s->ha_->Serving()) s->service_->Tick();
    }
  });
  return server;
}

absl::Status MasterServer::StartGrpc() {
  const std::string address = FormatHostPort(options_.bind_address, options_.port);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(grpc_service_.get());
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Without this a second master on the same port would silently share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              options_.rpc_thread_num);
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port_ == 0) {
    grpc_server_.reset();
    port_ = 0;
    return absl::UnavailableError(
        absl::StrCat("cannot serve gRPC on ", address, " (address in use or not local?)"));
  }
  return absl::OkStatus();
}

absl::Status MasterServer::StartMetrics() {
  if (options_.metrics_port == -1) return absl::OkStatus();
  metrics_server_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *metrics_server_;
  http.new_task_queue = [] { return new httplib::ThreadPool(2); };
  http.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.set_payload_max_length(4096);
  http.set_read_timeout(5, 0);
  http.set_write_timeout(5, 0);
  MasterService* service = service_.get();
  http.Get("/metrics", [this, service](const httplib::Request&, httplib::Response& res) {
    MasterMetrics m = service->GetMetrics();
    m.auth_refusals = grpc_service_->auth_refusals();
    if (fast_rpc_server_ != nullptr) m.auth_refusals += fast_rpc_server_->auth_refusals();
    if (metadata_server_ != nullptr) m.auth_refusals += metadata_server_->auth_refusals();
    if (ha::HaCoordinator* ha = ha_ready_.load(std::memory_order_acquire); ha != nullptr) {
      m.auth_refusals += ha->auth_refusals();
    }
    res.set_content(PrometheusText(m), "text/plain; version=0.0.4");
  });
  http.Get("/get_all_segments", [service](const httplib::Request&, httplib::Response& res) {
    res.set_content(SegmentListText(service->ListSegments()), "text/plain");
  });
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("OK\n", "text/plain");
  });
  // HA views (docs/ha.md). A master without --enable_ha is its own leader.
  http.Get("/role", [this](const httplib::Request&, httplib::Response& res) {
    ha::HaCoordinator* ha = ha_ready_.load();
    res.set_content(options_.enable_ha ? (ha != nullptr ? ha->RoleName() : "standby") + "\n"
                                       : std::string("leader\n"),
                    "text/plain");
  });
  http.Get("/leader", [this](const httplib::Request&, httplib::Response& res) {
    ha::HaCoordinator* ha = ha_ready_.load();
    const std::string leader = !options_.enable_ha ? FormatHostPort(options_.bind_address, port_)
                               : ha != nullptr     ? ha->LeaderAddress()
                                                   : "";
    if (leader.empty()) {
      res.status = 503;
      res.set_content("no leader is known\n", "text/plain");
      return;
    }
    res.set_content(leader + "\n", "text/plain");
  });
  http.Get("/ha_status", [this](const httplib::Request&, httplib::Response& res) {
    ha::HaCoordinator* ha = ha_ready_.load();
    res.set_content(ha != nullptr ? ha->StatusJson()
                                  : std::string(options_.enable_ha
                                                    ? "{\"enable_ha\":true,\"role\":\"starting\"}"
                                                    : "{\"enable_ha\":false,\"role\":\"leader\"}"),
                    "application/json");
  });
  if (options_.metrics_port == 0) {
    metrics_port_ = http.bind_to_any_port(options_.bind_address);
  } else if (http.bind_to_port(options_.bind_address, options_.metrics_port)) {
    metrics_port_ = options_.metrics_port;
  }
  if (metrics_port_ <= 0) {
    metrics_port_ = 0;
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", FormatHostPort(options_.bind_address, options_.metrics_port),
        " (address in use?)"));
  }
  metrics_thread_ = std::thread([&http] { http.listen_after_bind(); });
  // stop() is a no-op until the loop runs, so Stop() could otherwise miss it and hang in join.
  for (int i = 0; i < 5000 && !http.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!http.is_running()) {
    return absl::InternalError("the metrics server did not start within 5 s");
  }
  return absl::OkStatus();
}

absl::Status MasterServer::StartMetadata() {
  if (!options_.enable_http_metadata_server) return absl::OkStatus();
  metadata::HttpMetadataServerOptions metadata_options;
  metadata_options.host = options_.http_metadata_server_host.empty()
                              ? options_.bind_address
                              : options_.http_metadata_server_host;
  metadata_options.port = options_.http_metadata_server_port;
  metadata_options.auth_token = options_.auth_token;
  metadata_server_ = std::make_unique<metadata::HttpMetadataServer>(metadata_options);
  absl::Status started = metadata_server_->Start();
  if (!started.ok()) {
    metadata_server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot start the embedded HTTP metadata server: ", started.message()));
  }
  return absl::OkStatus();
}

int MasterServer::metadata_port() const {
  return metadata_server_ == nullptr ? 0 : metadata_server_->port();
}

absl::Status MasterServer::StartFastRpc() {
  if (options_.fast_rpc_port == -1) return absl::OkStatus();
  FastRpcServerOptions fast_options;
  fast_options.auth_token = options_.auth_token;
  fast_rpc_server_ = std::make_unique<FastRpcServer>(service_.get(), fast_options, gate_.get());
  absl::Status s = fast_rpc_server_->Start(options_.bind_address, options_.fast_rpc_port);
  if (!s.ok()) {
    fast_rpc_server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot serve fast RPC on ", options_.bind_address,
                                               ":", options_.fast_rpc_port, ": ", s.message()));
  }
  grpc_service_->set_fast_rpc_port(fast_rpc_server_->port());
  return absl::OkStatus();
}

int MasterServer::fast_rpc_port() const { return fast_rpc_server_ ? fast_rpc_server_->port() : 0; }

absl::Status MasterServer::StartHa() {
  if (!options_.enable_ha) return absl::OkStatus();
  ha::HaOptions o = options_.ha;
  o.grpc_port = port_;
  o.metrics_port = metrics_port_;
  o.auth_token = options_.auth_token;
  if (o.bind_host.empty()) o.bind_host = options_.bind_address;
  auto ha = ha::HaCoordinator::Start(o, service_.get(), log_.get());
  if (!ha.ok()) return ha.status();
  ha_ = *std::move(ha);
  ha_ready_.store(ha_.get(), std::memory_order_release);
  return absl::OkStatus();
}

void MasterServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  // Leadership goes first, so a standby can take over while the rest shuts down.
  if (ha_ != nullptr) ha_->Stop();
  if (!stop_ticking_.HasBeenNotified()) stop_ticking_.Notify();
  if (tick_thread_.joinable()) tick_thread_.join();
  if (fast_rpc_server_ != nullptr) fast_rpc_server_->Stop();
  if (grpc_server_ != nullptr) {
    // Handlers take microseconds; calls still running after this are cancelled.
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    grpc_server_->Wait();
  }
  if (metrics_server_ != nullptr) {
    metrics_server_->stop();
    if (metrics_thread_.joinable()) metrics_thread_.join();
  }
  if (metadata_server_ != nullptr) metadata_server_->Stop();
}

MasterServer::~MasterServer() { Stop(); }

}  // namespace mooncake
